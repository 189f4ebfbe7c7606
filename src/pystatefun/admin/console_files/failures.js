// Failures: parked addresses (GET /parked) with the reason and how many messages wait behind it, to resume
// (retry the failed message) or skip (it becomes a dead letter); dead letters (GET /dead-letters) with
// their reason, to replay once the cause is fixed (POST /dead-letters/{seq}/replay). Both listings page
// with after and limit.

import {addressPath, api, get} from "./api.js";
import {busy, bytes, fill, h, integer, outcome, shown, time} from "./dom.js";
import {go, href} from "./nav.js";

export const TITLE = "Failures";
export const PAGE = 50;

/** "ns/type/id" as [type, id]. */
function split(address) {
  const slash = address.lastIndexOf("/");
  return [address.slice(0, slash), address.slice(slash + 1)];
}

function addressLink(address) {
  const [type, id] = split(address);
  return h("a", {href: href("addresses", {type, id})}, address);
}

/** A reason as its first line, the rest (a traceback) behind a disclosure. */
function reason(text) {
  const [first, ...rest] = text.split("\n");
  return rest.length ? h("details", {}, h("summary", {}, first), h("pre", {}, rest.join("\n"))) : h("span", {}, first);
}

/** First and next page of one listing, named after it: the page has two. ``next``: the next page's after. */
function pager(listing, params, key, next) {
  return h("div", {class: "pager"},
    h("button", {type: "button", disabled: !params.get(key), onclick: () => go("failures", without(params, key))},
      `First page of ${listing}`),
    h("button", {type: "button", disabled: next === null, onclick: () => go("failures", {...without(params, key), [key]: next})},
      `Next page of ${listing}`));
}

function without(params, key) {
  const kept = Object.fromEntries(params);
  delete kept[key];
  return kept;
}

async function parked(section, result, params, signal) {
  const after = params.get("parked_after") || "";
  const entries = await get(`/parked?after=${encodeURIComponent(after)}&limit=${PAGE}`, {signal});
  const act = (entry, action) => async (event) => {
    try {
      await busy(event.target, () => api("POST", `/parked/${addressPath(...split(entry.address))}/${action}`));
      result.done(action === "resume"
        ? `Resumed ${entry.address}: its failed message is retried, then the ones waiting.`
        : `Skipped the failed message of ${entry.address}: it is a dead letter now, the ones waiting go on.`);
      await parked(section, result, params, signal);
    } catch (error) {
      result.error(error);
    }
  };
  fill(section, h("h2", {}, "Parked addresses"),
    h("p", {class: "quiet"}, "An address whose function failed stops taking messages, keeping them in order, until it is resumed or its failed message is skipped."),
    entries.length
      ? h("table", {class: "parked"},
        h("thead", {}, h("tr", {}, ["Address", "Reason", "Waiting", ""].map((t) => h("th", {scope: "col"}, t)))),
        h("tbody", {}, entries.map((entry) => h("tr", {},
          h("td", {}, addressLink(entry.address)),
          h("td", {}, reason(entry.reason)),
          h("td", {class: "number"}, integer(entry.waiting_messages)),
          h("td", {class: "actions"},
            h("button", {type: "button", onclick: act(entry, "resume")}, `Resume ${entry.address}`),
            h("button", {type: "button", class: "danger", onclick: act(entry, "skip")}, `Skip ${entry.address}`))))))
      : h("p", {class: "quiet"}, after ? "No parked address after these." : "No address is parked."),
    pager("parked addresses", params, "parked_after", entries.length === PAGE ? entries[entries.length - 1].address : null));
}

async function deadLetters(section, result, params, signal) {
  const after = params.get("letters_after") || "0";
  const letters = await get(`/dead-letters?after=${encodeURIComponent(after)}&limit=${PAGE}`, {signal});
  const replay = (letter) => async (event) => {
    try {
      const {data} = await busy(event.target, () => api("POST", `/dead-letters/${letter.seq}/replay`));
      result.done(data.replayed
        ? `Dead letter ${data.seq} sent again to ${data.target}.`
        : `Dead letter ${data.seq} was replayed before: nothing was sent again to ${data.target}.`);
    } catch (error) {
      result.error(error); // already replayed, or the target cannot take it: as the API says
    }
  };
  fill(section, h("h2", {}, "Dead letters"),
    h("p", {class: "quiet"}, "Messages that could not be delivered or were skipped. Replay sends one again to its target, once, like an ingress message."),
    letters.length
      ? h("table", {class: "letters"},
        h("thead", {}, h("tr", {}, ["Seq", "Target", "From", "Message", "Reason", "At", ""].map((t) => h("th", {scope: "col"}, t)))),
        h("tbody", {}, letters.map((letter) => h("tr", {},
          h("td", {class: "number"}, letter.seq),
          h("td", {}, addressLink(letter.target)),
          h("td", {}, letter.caller ?? "—"),
          h("td", {}, h("div", {class: "quiet"}, letter.typename), h("pre", {}, messageText(letter))),
          h("td", {}, reason(letter.reason)),
          h("td", {}, time(letter.at_ms)),
          h("td", {class: "actions"}, h("button", {type: "button", onclick: replay(letter)}, `Replay dead letter ${letter.seq}`))))))
      : h("p", {class: "quiet"}, after !== "0" ? "No dead letters after these." : "No dead letters."),
    pager("dead letters", params, "letters_after", letters.length === PAGE ? String(letters[letters.length - 1].seq) : null));
}

function messageText(letter) {
  const text = bytes(letter.value_base64);
  try {
    return shown(JSON.parse(text));
  } catch {
    return text;
  }
}

export async function show(main, params, signal) {
  const parkedSection = h("section", {class: "failures"});
  const parkedResult = outcome();
  const lettersSection = h("section", {class: "failures"});
  const lettersResult = outcome();
  const load = () => Promise.all([
    parked(parkedSection, parkedResult, params, signal),
    deadLetters(lettersSection, lettersResult, params, signal),
  ]);
  const refresh = h("button", {type: "button", onclick: (event) => {
    parkedResult.clear();
    lettersResult.clear();
    busy(event.target, load).catch((error) => lettersResult.error(error));
  }}, "Refresh");
  main.append(h("div", {class: "buttons"}, refresh), parkedSection, parkedResult.element, lettersSection, lettersResult.element);
  await load();
}
