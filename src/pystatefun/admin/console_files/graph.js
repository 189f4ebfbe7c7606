// Function graph: function types, ingresses and egresses, and the message flows the runtime counted between
// them (GET /graph), drawn by layout.js and updated every POLL_MS. A function's node is a link to its detail
// (GET /functions/{ns}/{type}), shown beside the graph.

import {POLL_MS, get, poll, typePath} from "./api.js";
import {h, integer, ms, rate, refill, s} from "./dom.js";
import {layout} from "./layout.js";
import {href} from "./nav.js";

export const TITLE = "Function graph";

const SIZE = {width: 240, height: 44, layerGap: 100, rowGap: 30, margin: 48};
const CHARACTERS = 32; // what fits in a node at the console's font size

function clip(text) {
  return text.length > CHARACTERS ? `${text.slice(0, CHARACTERS - 1)}…` : text;
}

function functionLink(typename) {
  return href("graph", {function: typename});
}

function drawing(graph, selected) {
  const placed = layout(graph.nodes, graph.edges, SIZE);
  const names = new Map(graph.nodes.map((node) => [node.id, node.name]));
  const edges = placed.edges.map((edge) => edgeShape(edge, names));
  const nodes = placed.nodes.map((node) => {
    const shape = [
      s("rect", {x: node.x, y: node.y, width: SIZE.width, height: SIZE.height, rx: node.kind === "function" ? 8 : 22}),
      s("text", {x: node.x + SIZE.width / 2, y: node.y + (node.kind === "function" ? 27 : 19), class: "name"}, clip(node.name)),
      node.kind === "function" ? null
        : s("text", {x: node.x + SIZE.width / 2, y: node.y + 35, class: "kind"}, node.kind),
      s("title", {}, `${node.kind} ${node.name}${node.idle ? ": no messages seen yet" : ""}`),
    ];
    const attributes = {class: `node ${node.kind}${node.idle ? " idle" : ""}${node.name === selected ? " selected" : ""}`,
      "data-id": node.id};
    // "function:other" sums the types past the first 200 the runtime names: it has no detail to show
    return node.kind === "function" && node.name.includes("/")
      ? s("a", {...attributes, href: functionLink(node.name), "aria-label": `function ${node.name}: details`}, shape)
      : s("g", attributes, shape);
  });
  return s("svg", {class: "graph", viewBox: `0 0 ${placed.width} ${placed.height}`, width: placed.width,
    role: "group", "aria-label": "Function graph: ingresses, functions and egresses, with message rates"},
  s("defs", {}, s("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
    orient: "auto-start-reverse"}, s("path", {d: "M 0 0 L 10 5 L 0 10 z"}))),
  s("g", {class: "edges"}, edges),
  s("g", {class: "nodes"}, nodes));
}

function edgeShape(edge, names) {
  const width = 1.5 + Math.min(4, Math.log10(1 + edge.per_s));
  const label = `${rate(edge.per_s)} · ${integer(edge.messages)}`;
  return s("g", {class: `edge${edge.back ? " back" : ""}${edge.per_s > 0 ? " active" : ""}`, "data-from": edge.from,
    "data-to": edge.to},
  s("path", {d: edge.path, "stroke-width": width.toFixed(2), "marker-end": "url(#arrow)"}),
  s("text", {x: edge.labelX, y: edge.labelY - 6}, label),
  s("title", {}, `${names.get(edge.from)} → ${names.get(edge.to)}: ${integer(edge.messages)} messages, ${rate(edge.per_s)}`));
}

function edgeTable(graph) {
  const names = new Map(graph.nodes.map((node) => [node.id, node]));
  const cell = (id) => {
    const node = names.get(id);
    if (!node) return h("td", {}, id);
    return h("td", {}, node.kind === "function" && node.name.includes("/")
      ? h("a", {href: functionLink(node.name)}, node.name) : `${node.kind} ${node.name}`);
  };
  const rows = [...graph.edges].sort((a, b) => b.per_s - a.per_s || b.messages - a.messages);
  return h("table", {class: "edges-table"},
    h("caption", {}, "Message flows"),
    h("thead", {}, h("tr", {}, ["From", "To", "Messages", "Rate"].map((t) => h("th", {scope: "col"}, t)))),
    h("tbody", {}, rows.length ? rows.map((edge) => h("tr", {},
      cell(edge.from), cell(edge.to), h("td", {class: "number"}, integer(edge.messages)),
      h("td", {class: "number"}, rate(edge.per_s))))
      : h("tr", {}, h("td", {colspan: 4, class: "quiet"}, "No messages yet: send some through an ingress."))));
}

function detail(typename, f) {
  const row = (label, value) => [h("dt", {}, label), h("dd", {}, value)];
  return [
    h("h2", {}, typename),
    h("dl", {class: "pairs"},
      row("Endpoint", f.endpoint),
      row("Health", f.health),
      row("Calls", integer(f.calls)),
      row("Failures", integer(f.failures)),
      row("Error rate", `${(100 * f.error_rate).toFixed(2)} %`),
      row("Latency p50", ms(f.latency_ms?.p50)),
      row("Latency p99", ms(f.latency_ms?.p99)),
      row("Batch size, mean", f.batch_size?.mean === null || f.batch_size?.mean === undefined ? "—" : f.batch_size.mean.toFixed(1)),
      row("Batch size, max", integer(f.batch_size?.max)),
      row("Addresses with state", integer(f.addresses))),
    h("p", {}, h("a", {href: href("addresses", {type: typename})}, `Browse the addresses of ${typename}`)),
  ];
}

export async function show(main, params, signal) {
  const selected = params.get("function");
  const stamp = h("p", {class: "quiet"}, "Loading…");
  const problem = h("p", {class: "outcome error", role: "alert", hidden: true});
  const picture = h("div", {class: "graph-frame"});
  const side = h("aside", {class: "detail", "aria-label": "Function detail"},
    selected ? "Loading…" : h("p", {class: "quiet"}, "Choose a function in the graph for its endpoint, health, latency, batch sizes and error rate."));
  const table = h("div", {});
  main.append(stamp, problem, h("div", {class: "graph-page"}, picture, side), table);
  await poll(signal, async () => {
    const [graph, f] = await Promise.all([
      get("/graph", {signal}),
      selected ? get(`/functions/${typePath(selected)}`, {signal}) : null,
    ]);
    refill(picture, graph.nodes.length ? drawing(graph, selected) : h("p", {class: "quiet"}, "No functions, ingresses or egresses."));
    refill(table, edgeTable(graph));
    if (selected) refill(side, detail(selected, f));
    problem.hidden = true;
    stamp.textContent = `Updated ${new Date().toLocaleTimeString()}, every ${POLL_MS / 1000} s. Each flow: messages per second over the last 10 s · messages since the process started.`;
  }, (error) => {
    problem.hidden = false;
    problem.textContent = error.message;
  });
}
