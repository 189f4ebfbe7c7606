// Calls to the admin API, which serves this console at <root>/ui/: every route is resolved against <root>, so
// the console also works behind a proxy that serves the API under a path of its own.

const ROOT = new URL("../", document.baseURI);

/** A refusal of the API: ``message`` is its own wording ({"error": ...}), to show as it is. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let authorized = null;

/**
 * With --admin-token the browser asked for the token when it loaded /ui/ and keeps it for that folder only,
 * so it would not send it to /overview or /state/...: a browser sends remembered credentials ahead only under
 * the folder it gave them for. One request to /ui (a sibling of /overview, same realm, and a 401 that asks)
 * makes it give them again without asking the user, now for the folder "/", which covers every route.
 * Without a token /ui only answers its redirect.
 */
function authorize() {
  authorized ??= fetch(new URL("ui", ROOT), {redirect: "manual", cache: "no-store"}).catch(() => null);
  return authorized;
}

/** Path segments of a function type ("ns/type") and an id, each escaped. */
export function typePath(typename) {
  const slash = typename.lastIndexOf("/");
  return `${encodeURIComponent(typename.slice(0, slash))}/${encodeURIComponent(typename.slice(slash + 1))}`;
}

export function addressPath(typename, id) {
  return `${typePath(typename)}/${encodeURIComponent(id)}`;
}

/**
 * ``method`` ``path`` (from the API's root, "/state/..."), with ``json`` as a JSON body or ``body`` with its
 * ``contentType``. Answers {status, data, contentType}, data parsed when it is JSON; throws ApiError with
 * the API's own words when it refuses.
 */
export async function api(method, path, {json, body, contentType, signal} = {}) {
  await authorize();
  const headers = {};
  if (json !== undefined) {
    body = JSON.stringify(json);
    contentType = "application/json";
  }
  if (contentType) headers["Content-Type"] = contentType;
  let response;
  try {
    response = await fetch(new URL(path.replace(/^\//, ""), ROOT), {method, headers, body, cache: "no-store", signal});
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, `the admin API did not answer (${error.message}): is the application still running?`);
  }
  const type = response.headers.get("Content-Type") || "";
  const text = await response.text();
  let data = text;
  if (type.includes("json")) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON after all: shown as the text it is
    }
  }
  if (!response.ok) {
    const reason = data && typeof data === "object" && typeof data.error === "string"
      ? data.error
      : `${response.status} ${response.statusText}${text ? `: ${text.slice(0, 500)}` : ""}`;
    throw new ApiError(response.status, reason);
  }
  return {status: response.status, data, contentType: type};
}

/** GET ``path``: its data. */
export async function get(path, options) {
  return (await api("GET", path, options)).data;
}

/** The function types of /functions (every binding's), sorted, with their state specs. */
export async function functionTypes() {
  const types = new Map();
  for (const binding of await get("/functions")) {
    for (const [typename, specs] of Object.entries(binding.function_types || {})) {
      types.set(typename, {specs, binding});
    }
  }
  return new Map([...types].sort(([a], [b]) => a.localeCompare(b)));
}

/** How often the live pages ask again. */
export const POLL_MS = 2000;

/**
 * Runs ``load`` now and again POLL_MS after each run ends (so a slow answer never piles requests up), until
 * ``signal`` aborts; ``failed`` gets an error of a run, after which the polling goes on.
 */
export async function poll(signal, load, failed) {
  while (!signal.aborted) {
    try {
      await load();
    } catch (error) {
      if (error.name === "AbortError") return;
      failed(error);
    }
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, POLL_MS);
      signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, {once: true});
    });
  }
}
