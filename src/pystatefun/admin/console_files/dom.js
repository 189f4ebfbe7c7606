// Building the pages' elements. Text from the API always goes in as text nodes or attribute values, never as
// markup, so a state value or an error message cannot inject anything into the console.

const SVG = "http://www.w3.org/2000/svg";

function build(element, attributes, children) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** An HTML element: h("button", {type: "button", onclick: f}, "Resume"). */
export function h(tag, attributes, ...children) {
  return build(document.createElement(tag), attributes, children);
}

/** An SVG element, the same way. */
export function s(tag, attributes, ...children) {
  return build(document.createElementNS(SVG, tag), attributes, children);
}

/** Replaces what ``element`` holds with ``children``. */
export function fill(element, ...children) {
  element.replaceChildren();
  return build(element, {}, children);
}

const FOCUSABLE = "a[href], button, input, select, textarea, summary, [tabindex]";

/**
 * ``fill`` for the live pages, which draw their view again at each poll: the keyboard focus stays on the
 * control in the same place among the focusable ones (the view's shape rarely changes between polls), so
 * a keyboard user on a graph node or a link is not sent back to the top every 2 seconds.
 */
export function refill(element, ...children) {
  const index = [...element.querySelectorAll(FOCUSABLE)].indexOf(document.activeElement);
  fill(element, ...children);
  if (index >= 0) element.querySelectorAll(FOCUSABLE)[index]?.focus({preventScroll: true});
  return element;
}

let labelled = 0;

/** A labelled field: the label's ``for`` names the control's id, so screen readers and clicks find it. */
export function field(label, control, hint) {
  const id = control.id || `field-${++labelled}`;
  control.id = id;
  return h("div", {class: "field"}, h("label", {for: id}, label), control, hint ? h("small", {}, hint) : null);
}

/** A place for an action's outcome: an error as the API worded it, or what was done. */
export function outcome() {
  const element = h("p", {class: "outcome", role: "status", "aria-live": "polite", hidden: true});
  return {
    element,
    error(error) {
      element.hidden = false;
      element.className = "outcome error";
      element.textContent = error && error.message ? error.message : String(error);
    },
    done(text) {
      element.hidden = false;
      element.className = "outcome done";
      element.textContent = text;
    },
    clear() {
      element.hidden = true;
      element.textContent = "";
    },
  };
}

/** Runs ``action`` with ``button`` disabled meanwhile, so a slow commit is not sent twice. */
export async function busy(button, action) {
  button.disabled = true;
  try {
    return await action();
  } finally {
    button.disabled = false;
  }
}

const count = new Intl.NumberFormat("en", {maximumFractionDigits: 0});
const decimal = new Intl.NumberFormat("en", {maximumFractionDigits: 1});

export function integer(value) {
  return value === null || value === undefined ? "—" : count.format(value);
}

export function rate(value) {
  return value === null || value === undefined ? "—" : `${decimal.format(value)}/s`;
}

export function ms(value) {
  return value === null || value === undefined ? "—" : `${decimal.format(value)} ms`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.floor(seconds);
  const parts = [[Math.floor(s / 86400), "d"], [Math.floor(s / 3600) % 24, "h"], [Math.floor(s / 60) % 60, "m"], [s % 60, "s"]];
  const first = parts.findIndex(([n]) => n > 0);
  return first < 0 ? "0s" : parts.slice(first, first + 2).map(([n, unit]) => `${n}${unit}`).join(" ");
}

export function time(epochMs) {
  return epochMs === null || epochMs === undefined ? "—" : new Date(epochMs).toLocaleString();
}

/** A value as JSON text for a <pre>, or the text itself. */
export function shown(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

/**
 * Bytes the API gives in base64, as text when they are printable UTF-8; others (a protobuf, a built-in
 * type's wrapper) as the base64 they are.
 */
export function bytes(base64) {
  try {
    const data = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const text = new TextDecoder("utf-8", {fatal: true}).decode(data);
    if (!/[\u0000-\u0008\u000e-\u001f]/.test(text)) return text;
  } catch {
    // not UTF-8
  }
  return `${base64} (bytes, base64)`;
}
