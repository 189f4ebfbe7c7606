// A small layered layout for the function graph, drawn left to right: ingresses first, egresses last,
// each function one layer after the furthest function that sends to it. Cycles (a cart asks the stock, the
// stock answers the cart) are broken by a depth-first search from the ingresses: the edges it finds going
// back are drawn as arcs under the nodes instead of pushing layers apart. An edge across several layers
// passes through a virtual node in each (Sugiyama's method). Within a layer, nodes are ordered by the mean
// position of their neighbours (the barycenter heuristic), which uncrosses most edges of graphs this size.

const SWEEPS = 4;
const ARC_STEP = 22; // how much deeper each arc of an edge going back runs than the one before

/**
 * ``nodes`` [{id, kind, name}], ``edges`` [{from, to, ...}], ``size`` {width, height, layerGap, rowGap,
 * margin}: where each node goes and each edge's path, as {nodes: [{...node, x, y, layer}], edges:
 * [{...edge, path, labelX, labelY, back}], width, height}. Edges naming a node not in ``nodes`` are left out.
 */
export function layout(nodes, edges, size) {
  const byId = new Map(nodes.map((node) => [node.id, node]));
  const kept = edges.filter((edge) => byId.has(edge.from) && byId.has(edge.to));
  const outgoing = new Map(nodes.map((node) => [node.id, []]));
  for (const edge of kept) if (edge.from !== edge.to) outgoing.get(edge.from).push(edge.to);

  const byName = (a, b) => a.name.localeCompare(b.name);
  const ofKind = (kind) => nodes.filter((node) => node.kind === kind).sort(byName);
  const starts = [...ofKind("ingress"), ...ofKind("function"), ...ofKind("egress")];

  // depth-first from the ingresses: the visiting order seeds the order within layers, and an edge to a node
  // still on the stack closes a cycle
  const back = new Set();
  const discovered = [];
  const state = new Map(); // id -> "open" while on the stack, "done" after
  const visit = (id) => {
    state.set(id, "open");
    discovered.push(id);
    for (const next of [...outgoing.get(id)].sort()) {
      if (state.get(next) === "open") back.add(`${id}\n${next}`);
      else if (!state.has(next)) visit(next);
    }
    state.set(id, "done");
  };
  // a node no flow reaches yet goes in a row of its own under the graph, out of the flows' way
  const linked = new Set(kept.flatMap((edge) => [edge.from, edge.to]));
  const idle = starts.filter((node) => !linked.has(node.id));
  for (const node of starts) if (linked.has(node.id) && !state.has(node.id)) visit(node.id);

  // longest path over the forward edges, in an order where every sender comes first (Kahn's)
  const forward = kept.filter((edge) => edge.from !== edge.to && !back.has(`${edge.from}\n${edge.to}`));
  const incoming = new Map(discovered.map((id) => [id, 0]));
  for (const edge of forward) incoming.set(edge.to, incoming.get(edge.to) + 1);
  const first = discovered.some((id) => byId.get(id).kind === "ingress") ? 1 : 0;
  const layer = new Map(discovered.map((id) => [id, byId.get(id).kind === "ingress" ? 0 : first]));
  const ready = discovered.filter((id) => incoming.get(id) === 0);
  while (ready.length) {
    const id = ready.shift();
    for (const edge of forward.filter((e) => e.from === id)) {
      layer.set(edge.to, Math.max(layer.get(edge.to), layer.get(id) + 1));
      incoming.set(edge.to, incoming.get(edge.to) - 1);
      if (incoming.get(edge.to) === 0) ready.push(edge.to);
    }
  }
  const functions = discovered.filter((id) => byId.get(id).kind === "function");
  const lastFunction = Math.max(first, ...functions.map((id) => layer.get(id)));
  for (const id of discovered) if (byId.get(id).kind === "egress") layer.set(id, lastFunction + 1);

  // an edge across several layers gets a virtual node in each layer between, ordered and placed like the
  // real ones, so that it passes between nodes instead of through them
  const chains = new Map(); // edge -> the ids of its virtual nodes, in order
  for (const edge of forward) {
    const chain = [];
    for (let l = layer.get(edge.from) + 1; l < layer.get(edge.to); l++) {
      const id = `virtual ${layer.size}`;
      layer.set(id, l);
      chain.push(id);
    }
    if (chain.length) chains.set(edge, chain);
  }

  const layers = [];
  for (const id of [...discovered, ...[...chains.values()].flat()]) (layers[layer.get(id)] ??= []).push(id);
  for (let i = 0; i < layers.length; i++) layers[i] ??= [];

  const neighbours = new Map([...layer.keys()].map((id) => [id, {before: [], after: []}]));
  const link = (x, y) => {
    const [a, b] = layer.get(x) <= layer.get(y) ? [x, y] : [y, x];
    neighbours.get(b).before.push(a);
    neighbours.get(a).after.push(b);
  };
  for (const edge of kept) {
    if (edge.from === edge.to) continue;
    const path = [edge.from, ...(chains.get(edge) || []), edge.to];
    for (let i = 1; i < path.length; i++) link(path[i - 1], path[i]);
  }
  const position = new Map();
  layers.forEach((ids) => ids.forEach((id, index) => position.set(id, index)));
  const reorder = (ids, side) => {
    const key = new Map(ids.map((id, index) => {
      const others = neighbours.get(id)[side];
      return [id, others.length ? others.reduce((sum, other) => sum + position.get(other), 0) / others.length : index];
    }));
    ids.sort((a, b) => key.get(a) - key.get(b));
    ids.forEach((id, index) => position.set(id, index));
  };
  for (let sweep = 0; sweep < SWEEPS; sweep++) {
    for (let i = 1; i < layers.length; i++) reorder(layers[i], "before");
    for (let i = layers.length - 2; i >= 0; i--) reorder(layers[i], "after");
  }

  const {width, height, layerGap, rowGap, margin} = size;
  const tallest = Math.max(1, ...layers.map((ids) => ids.length));
  const placed = new Map();
  layers.forEach((ids, index) => {
    const offset = ((tallest - ids.length) * (height + rowGap)) / 2;
    ids.forEach((id, row) => placed.set(id, {
      ...byId.get(id), id, layer: index, x: margin + index * (width + layerGap), y: margin + offset + row * (height + rowGap),
    }));
  });
  const bottom = margin + tallest * (height + rowGap) - rowGap;

  // arcs under the nodes for edges going back, each a little deeper than the one before so that they part
  let depth = 0;
  const routed = kept.map((edge) => {
    const a = placed.get(edge.from);
    const b = placed.get(edge.to);
    if (a === b) { // a type sending to its own type: a loop over the node
      const x = a.x + width / 2;
      const path = `M ${x - 12} ${a.y} C ${x - 30} ${a.y - 40}, ${x + 30} ${a.y - 40}, ${x + 12} ${a.y}`;
      return {...edge, back: false, path, labelX: x, labelY: a.y - 34};
    }
    if (b.layer > a.layer) { // curves from slot to slot, straight through each virtual node's slot
      const stops = (chains.get(edge) || []).map((id) => placed.get(id));
      let [x, y] = [a.x + width, a.y + height / 2];
      let path = `M ${x} ${y}`;
      let label = null;
      for (const next of [...stops, b]) {
        const [x3, y3] = [next.x, next.y + height / 2];
        const bend = Math.max(30, (x3 - x) / 2);
        path += ` C ${x + bend} ${y}, ${x3 - bend} ${y3}, ${x3} ${y3}`;
        label ??= middle([x, y], [x + bend, y], [x3 - bend, y3], [x3, y3]);
        [x, y] = [x3 + width, y3];
        if (next !== b) path += ` L ${x} ${y}`;
      }
      return {...edge, back: false, path, ...label};
    }
    depth += 1;
    const [x0, y0, x3, y3] = [a.x + width / 2 + 10, a.y + height, b.x + width / 2 - 10, b.y + height];
    // control points at ``low`` put the curve's lowest point at (y0 + y3) / 8 + 3/4 low: ARC_STEP per arc
    const low = (bottom + ARC_STEP * depth - (y0 + y3) / 8) / 0.75;
    return {...edge, back: true, path: `M ${x0} ${y0} C ${x0} ${low}, ${x3} ${low}, ${x3} ${y3}`,
      ...middle([x0, y0], [x0, low], [x3, low], [x3, y3])};
  });

  const columns = Math.max(3, layers.length);
  const idleTop = linked.size ? bottom + ARC_STEP * depth + rowGap + ARC_STEP : margin;
  idle.forEach((node, index) => placed.set(node.id, {
    ...node, layer: null, idle: true, x: margin + (index % columns) * (width + layerGap),
    y: idleTop + Math.floor(index / columns) * (height + rowGap),
  }));
  const rows = Math.ceil(idle.length / columns);
  return {
    nodes: [...placed.values()].filter((node) => byId.has(node.id)),
    edges: routed,
    width: margin * 2 + Math.max(layers.length, Math.min(idle.length, columns)) * (width + layerGap) - layerGap,
    height: (rows ? idleTop + rows * (height + rowGap) - rowGap : bottom + ARC_STEP * depth) + margin,
  };
}

/** The point halfway along a cubic Bézier curve, where its label goes. */
function middle(p0, p1, p2, p3) {
  return {labelX: (p0[0] + 3 * p1[0] + 3 * p2[0] + p3[0]) / 8, labelY: (p0[1] + 3 * p1[1] + 3 * p2[1] + p3[1]) / 8};
}
