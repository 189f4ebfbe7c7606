// Addresses: pick a function type (GET /functions), page through its addresses (GET /addresses with after
// and limit: one page per request, however many there are), and open one: its states decoded, edited
// (PUT, checked by the API, whose refusal is shown as it words it) or deleted, its pending delayed messages
// (cancel one), and a message to send it, with or without waiting for its reply.

import {addressPath, api, functionTypes, get, typePath} from "./api.js";
import {busy, bytes, field, fill, h, outcome, shown, time} from "./dom.js";
import {go, href} from "./nav.js";

export const TITLE = "Addresses";
export const PAGE = 50;

// the "after" of each page before the current one, to go back a page: pages are keyed by their first id's
// predecessor, so there is no page number to go back to in a listing that changes meanwhile
let trail = {type: null, afters: []};

export async function show(main, params, signal) {
  const type = params.get("type") || "";
  const id = params.get("id");
  const after = params.get("after") || "";
  const types = await functionTypes();
  if (trail.type !== type) trail = {type, afters: []};

  const picker = h("select", {name: "type", onchange: (event) => go("addresses", {type: event.target.value})},
    h("option", {value: ""}, types.size ? "Choose a function type" : "No function types known yet"),
    [...types.keys()].map((t) => h("option", {value: t, selected: t === type}, t)));
  main.append(h("form", {class: "inline", onsubmit: (event) => event.preventDefault()},
    field("Function type", picker)));
  if (!type) return;
  if (!types.has(type)) {
    main.append(h("p", {class: "outcome error", role: "alert"},
      `${type} is not among the function types of /functions: ${[...types.keys()].join(", ") || "none"}`));
    return;
  }

  const listing = h("section", {class: "listing", "aria-labelledby": "listing-title"});
  const opened = h("section", {class: "address"});
  main.append(h("div", {class: "columns"}, listing, opened));
  await Promise.all([
    list(listing, type, after, id, signal),
    id === null ? null : address(opened, type, id, types.get(type).specs, signal),
  ]);
}

async function list(section, type, after, selected, signal) {
  const wanted = h("input", {type: "text", name: "id", autocomplete: "off", value: selected ?? "", required: true});
  const open = h("form", {class: "inline", onsubmit: (event) => {
    event.preventDefault();
    go("addresses", {type, after, id: wanted.value});
  }}, field("Address id", wanted), h("button", {type: "submit"}, "Open"),
  h("button", {type: "button", onclick: () => {
    trail.afters.push(after);
    go("addresses", {type, after: wanted.value});
  }}, "List from here"));
  fill(section, h("h2", {id: "listing-title"}, `Addresses of ${type}`), open);

  const page = await get(`/addresses/${typePath(type)}?after=${encodeURIComponent(after)}&limit=${PAGE}`, {signal});
  const items = page.ids.map((one) => h("li", {},
    h("a", {href: href("addresses", {type, after, id: one}), "aria-current": one === selected ? "true" : null}, one)));
  section.append(
    h("p", {class: "quiet"}, after ? `Ids after “${after}”, in order, ${PAGE} a page.` : `Ids with state, in order, ${PAGE} a page.`),
    items.length ? h("ol", {class: "ids"}, items) : h("p", {class: "quiet"}, after ? "No ids after this one." : "No address of this type has state yet."),
    h("div", {class: "pager"},
      h("button", {type: "button", disabled: !after, onclick: () => { trail.afters = []; go("addresses", {type}); }}, "First page"),
      h("button", {type: "button", disabled: !trail.afters.length, onclick: () => go("addresses", {type, after: trail.afters.pop()})}, "Previous page"),
      h("button", {type: "button", disabled: !page.next, onclick: () => {
        trail.afters.push(after);
        go("addresses", {type, after: page.ids[page.ids.length - 1]});
      }}, "Next page")));
}

async function address(section, type, id, specs, signal) {
  const path = addressPath(type, id);
  const states = h("div", {});
  const delayed = h("div", {});
  fill(section, h("h2", {}, `${type}/${id}`), h("h3", {}, "State"), states, h("h3", {}, "Delayed messages"), delayed,
    h("h3", {}, "Send a message"), sender(type, id));

  // each action's outcome stays in place while the table under it is drawn again
  const stateResult = outcome();
  const delayedResult = outcome();
  states.after(stateResult.element);
  delayed.after(delayedResult.element);
  const refreshStates = async () => fill(states, stateTable(type, path, specs, await get(`/state/${path}`, {signal}),
    stateResult, refreshStates));
  const refreshDelayed = async () => fill(delayed, delayedTable(path, await get(`/delayed/${path}`, {signal}),
    delayedResult, refreshDelayed));
  await Promise.all([refreshStates(), refreshDelayed()]);
}

function stateTable(type, path, specs, current, result, refresh) {
  const names = [...new Set([...Object.keys(specs), ...Object.keys(current.state)])].sort();
  if (!names.length) return h("p", {class: "quiet"}, `${type} has no registered states.`);
  const rows = names.map((name) => {
    const value = current.state[name];
    const spec = specs[name];
    const actions = h("td", {class: "actions"});
    const row = h("tr", {},
      h("th", {scope: "row"}, name),
      h("td", {}, value?.typename ?? spec?.typename ?? "—"),
      h("td", {}, value === undefined ? h("span", {class: "quiet"}, "not set")
        : h("pre", {}, "value" in value ? shown(value.value) : `${value.value_base64} (base64: not JSON)`)),
      h("td", {}, value?.expires_at_ms ? time(value.expires_at_ms) : "never"),
      actions);
    const edit = h("button", {type: "button", onclick: () => {
      row.after(editor(path, name, value, spec, result, refresh));
      edit.disabled = true;
    }}, value === undefined ? `Set ${name}` : `Edit ${name}`);
    const remove = h("button", {type: "button", class: "danger", disabled: value === undefined, onclick: () => fill(actions,
      h("button", {type: "button", class: "danger", onclick: async (event) => {
        try {
          await busy(event.target, () => api("DELETE", `/state/${path}?name=${encodeURIComponent(name)}`));
          result.done(`Deleted ${name}.`);
          await refresh();
        } catch (error) {
          result.error(error);
        }
      }}, `Delete ${name} for good`),
      h("button", {type: "button", onclick: () => fill(actions, edit, remove)}, "Keep it"))}, `Delete ${name}`);
    fill(actions, edit, remove);
    return row;
  });
  return h("table", {class: "states"},
    h("thead", {}, h("tr", {}, ["Name", "Type", "Value", "Expires", ""].map((t) => h("th", {scope: "col"}, t)))),
    h("tbody", {}, rows));
}

function editor(path, name, value, spec, result, refresh) {
  const decodable = value === undefined || "value" in value;
  const text = h("textarea", {name: "value", rows: 6, spellcheck: "false"},
    value === undefined ? "" : "value" in value ? JSON.stringify(value.value, null, 2) : value.value_base64);
  const given = h("select", {name: "form"},
    h("option", {value: "json", selected: decodable}, "a JSON value"),
    h("option", {value: "base64", selected: !decodable}, "bytes, in base64"));
  const problem = outcome();
  const row = h("tr", {class: "editing"}, h("td", {colspan: 5}, h("form", {onsubmit: async (event) => {
    event.preventDefault();
    let entry;
    if (given.value === "json") {
      try {
        entry = {value: JSON.parse(text.value)};
      } catch (error) {
        problem.error(`The value is not JSON (${error.message}): write a string in "quotes", a number, or an object.`);
        return;
      }
    } else {
      entry = {value_base64: text.value.trim()};
    }
    try {
      await busy(event.submitter, () => api("PUT", `/state/${path}`, {json: {[name]: entry}}));
      result.done(`Saved ${name}.`);
      await refresh();
    } catch (error) {
      problem.error(error); // the API's check: the state's name, its type and why the function could not read it
    }
  }},
  field(`New value of ${name}${spec ? ` (${spec.typename})` : ""}`, text),
  field("Given as", given),
  h("div", {class: "buttons"},
    h("button", {type: "submit"}, `Save ${name}`),
    h("button", {type: "button", onclick: () => refresh()}, "Cancel")),
  problem.element)));
  return row;
}

function delayedTable(path, pending, result, refresh) {
  if (!pending.length) return h("p", {class: "quiet"}, "No delayed message of this address is pending.");
  return h("table", {class: "delayed"},
      h("thead", {}, h("tr", {}, ["Timer", "Due", "To", "Type", "Message", ""].map((t) => h("th", {scope: "col"}, t)))),
      h("tbody", {}, pending.map((timer) => h("tr", {},
        h("td", {class: "number"}, timer.timer_id),
        h("td", {}, time(timer.due_at_ms)),
        h("td", {}, timer.target),
        h("td", {}, timer.typename),
        h("td", {}, h("pre", {}, "value" in timer ? shown(timer.value) : bytes(timer.value_base64))),
        h("td", {}, h("button", {type: "button", class: "danger", onclick: async (event) => {
          try {
            await busy(event.target, () => api("DELETE", `/delayed/${path}/${timer.timer_id}`));
            result.done(`Cancelled timer ${timer.timer_id}: its message will not be sent.`);
            await refresh();
          } catch (error) {
            result.error(error);
          }
        }}, `Cancel timer ${timer.timer_id}`))))));
}

function sender(type, id) {
  const contentType = h("input", {type: "text", name: "content-type", required: true, autocomplete: "off",
    placeholder: "application/vnd.com.example/AddToCart"});
  const body = h("textarea", {name: "body", rows: 4, spellcheck: "false", placeholder: '{"sku": "socks", "quantity": 1}'});
  const wait = h("input", {type: "number", name: "wait", min: 0, step: "any", inputmode: "decimal"});
  const result = outcome();
  const answer = h("div", {class: "answer", "aria-live": "polite"});
  return h("form", {class: "send", onsubmit: async (event) => {
    event.preventDefault();
    result.clear();
    answer.replaceChildren();
    const query = wait.value === "" ? "" : `?wait=${encodeURIComponent(wait.value)}`;
    try {
      const reply = await busy(event.submitter, () => api("POST", `/messages/${addressPath(type, id)}${query}`,
        {body: body.value, contentType: contentType.value.trim()}));
      if (reply.data.reply === undefined) {
        result.done(`Accepted: the message to ${reply.data.address} is durable and will be delivered.`);
      } else {
        const value = reply.data.reply;
        result.done(`${reply.data.address} answered with a ${value.typename}:`);
        fill(answer, h("pre", {class: "reply"},
          "value" in value ? shown(value.value) : bytes(value.value_base64)));
      }
    } catch (error) {
      result.error(error);
    }
  }},
  field("Content-Type", contentType, "as the HTTP ingress takes it: application/vnd.<typename> or a type the function accepts"),
  field("Body", body),
  field("Wait for the reply (seconds)", wait, "empty: send and do not wait"),
  h("div", {class: "buttons"}, h("button", {type: "submit"}, `Send to ${id}`)),
  result.element, answer);
}
