// Overview: the runtime or its workers, partitions, commit rate and latency, message rates, lag and the
// failure counts, from GET /overview every POLL_MS.

import {POLL_MS, get, poll} from "./api.js";
import {duration, h, integer, ms, rate, refill} from "./dom.js";
import {href} from "./nav.js";

export const TITLE = "Overview";

function figure(label, value, link) {
  return h("div", {class: "figure"},
    h("dt", {}, label),
    h("dd", {}, link ? h("a", {href: link}, value) : value));
}

function render(view, o) {
  const figures = h("dl", {class: "figures"},
    figure("Backend", o.backend),
    figure("Application", o.application),
    figure("Up for", duration(o.uptime_s)),
    figure("Partitions", integer(o.partitions)),
    figure("Epochs committed", rate(o.epochs_per_s)),
    figure("Commit latency p50", ms(o.commit_latency_ms?.p50)),
    figure("Commit latency p99", ms(o.commit_latency_ms?.p99)),
    figure("Messages", rate(o.messages_per_s)),
    figure("Ingress", rate(o.ingress_per_s)),
    figure("Egress", rate(o.egress_per_s)),
    figure("Parked addresses", integer(o.parked), href("failures")),
    figure("Dead letters", integer(o.dead_letters), href("failures")),
  );
  const workers = h("table", {},
    h("caption", {}, o.backend === "kafka" ? "Workers and the partitions they own" : "The runtime and its partitions"),
    h("thead", {}, h("tr", {}, h("th", {scope: "col"}, "Worker"), h("th", {scope: "col"}, "Partitions"),
      h("th", {scope: "col"}, "Admin API"))),
    h("tbody", {}, o.workers.map((w) => h("tr", {},
      h("td", {}, w.worker),
      h("td", {}, w.partitions.length ? compact(w.partitions) : "none"),
      h("td", {}, w.admin ? adminLink(w.admin) : "—")))));
  const lag = o.lag.length
    ? h("table", {},
      h("caption", {}, "Ingress lag (records not read yet)"),
      h("thead", {}, h("tr", {}, ["Ingress", "Topic", "Partition", "Lag"].map((t) => h("th", {scope: "col"}, t)))),
      h("tbody", {}, o.lag.map((l) => h("tr", {},
        h("td", {}, l.ingress), h("td", {}, l.topic), h("td", {class: "number"}, l.partition),
        h("td", {class: "number"}, integer(l.lag))))))
    : h("p", {class: "quiet"}, "No Kafka ingress: no lag to show.");
  refill(view, figures, workers, lag);
}

/** A worker's admin API as a link to its own console, or as the text given when that is no URL. */
function adminLink(admin) {
  try {
    return h("a", {href: new URL("ui/", admin.endsWith("/") ? admin : `${admin}/`).href}, admin);
  } catch {
    return admin;
  }
}

/** Partition numbers as ranges: 0-3, 6, 8-9. */
function compact(numbers) {
  const sorted = [...numbers].sort((a, b) => a - b);
  const ranges = [];
  for (const n of sorted) {
    const last = ranges[ranges.length - 1];
    if (last && n === last[1] + 1) last[1] = n;
    else ranges.push([n, n]);
  }
  return ranges.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(", ");
}

export async function show(main, params, signal) {
  const stamp = h("p", {class: "quiet", "aria-live": "off"}, "Loading…");
  const problem = h("p", {class: "outcome error", role: "alert", hidden: true});
  const view = h("div", {class: "overview"});
  main.append(stamp, problem, view);
  await poll(signal, async () => {
    render(view, await get("/overview", {signal}));
    problem.hidden = true;
    stamp.textContent = `Updated ${new Date().toLocaleTimeString()}, every ${POLL_MS / 1000} s.`;
  }, (error) => {
    // the last figures stay, with why they are not updated
    problem.hidden = false;
    problem.textContent = error.message;
  });
}
