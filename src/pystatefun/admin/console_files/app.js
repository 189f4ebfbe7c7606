// The console's pages, one at a time, chosen by the location's hash: "#/addresses?type=ns/t&id=x". A page is
// show(main, params, signal): it fills ``main`` and stops its polling and requests when ``signal`` aborts.

import {fill, h} from "./dom.js";
import * as overview from "./overview.js";
import * as graph from "./graph.js";
import * as addresses from "./addresses.js";
import * as failures from "./failures.js";

const PAGES = {overview, graph, addresses, failures};

let current = null;

function route() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const name = path in PAGES ? path : "overview";
  return {name, params: new URLSearchParams(query || "")};
}

function show() {
  const {name, params} = route();
  current?.abort();
  current = new AbortController();
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#/${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const page = PAGES[name];
  document.title = `${page.TITLE} · pystatefun console`;
  const main = document.getElementById("page");
  fill(main, h("h1", {}, page.TITLE));
  page.show(main, params, current.signal).catch((error) => {
    if (error.name !== "AbortError") {
      main.append(h("p", {class: "outcome error", role: "alert"}, error.message));
    }
  });
}

window.addEventListener("hashchange", show);
show();
