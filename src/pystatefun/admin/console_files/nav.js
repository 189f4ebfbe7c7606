// Links between the pages: the location's hash names the page and its parameters (app.js reads it).

/** The href of ``page`` with ``params`` (an object; empty values left out). */
export function href(page, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  const text = query.toString();
  return `#/${page}${text ? `?${text}` : ""}`;
}

/** Goes to ``page`` with ``params``, as a new history entry. */
export function go(page, params = {}) {
  location.hash = href(page, params);
}
