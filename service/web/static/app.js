// The page's entry point: the address after "#" picks the view, and each view gets an
// AbortSignal that ends its work (an event stream, timers) when the user moves on.

import { hasToken, signOut } from "./api.js";
import { fill, h } from "./dom.js";
import { lang, setLang, t } from "./i18n.js";
import { renderJob } from "./job.js";
import { renderReader } from "./reader.js";
import { renderHome } from "./upload.js";
import { renderWork } from "./work.js";

const ROUTES = [
  [/^\/?$/, () => ({ view: renderHome })],
  [/^\/work$/, () => ({ view: renderWorkPage })],
  [/^\/job\/([0-9a-f]{32})$/, (m) => ({ view: renderJob, params: { jobId: m[1] } })],
  [
    /^\/read\/(job|novel)\/([0-9a-f]{32})(?:\/(\d+))?$/,
    (m) => ({ view: renderReader, params: { kind: m[1], id: m[2], chapter: m[3] } }),
  ],
];

function renderWorkPage(main, context) {
  const section = h("section", { class: "work card", id: "work", "aria-labelledby": "work-heading" });
  fill(main, section);
  renderWork(section, { ...context, standalone: true });
}

function renderNotFound(main) {
  fill(
    main,
    h(
      "section",
      { class: "card" },
      h("h1", { tabIndex: -1, text: t("notFound") }),
      h("a", { class: "button", href: "#/", text: t("back") }),
    ),
  );
}

function resolve(hash) {
  const path = decodeURIComponent(hash.replace(/^#/, ""));
  for (const [pattern, make] of ROUTES) {
    const match = pattern.exec(path);
    if (match) return make(match);
  }
  return { view: renderNotFound };
}

function renderNav() {
  const nav = document.getElementById("topnav");
  const other = lang() === "zh" ? "en" : "zh";
  const language = h("button", {
    type: "button",
    class: "nav-button",
    id: "lang-toggle",
    lang: other === "zh" ? "zh-Hans" : "en",
    "aria-label": t("nav.languageLabel"),
    text: t("nav.language"),
  });
  language.addEventListener("click", () => {
    setLang(other);
    route();
  });
  const out = hasToken()
    ? h("button", { type: "button", class: "nav-button", id: "sign-out", text: t("nav.signOut") })
    : null;
  out?.addEventListener("click", () => {
    signOut();
    route();
  });
  fill(
    nav,
    h("a", { href: "#/", text: t("nav.new") }),
    h("a", { href: "#/work", text: t("nav.work") }),
    out,
    language,
  );
  document.getElementById("brand").textContent = t("brand");
}

let current = null;
let first = true;

function route() {
  current?.abort();
  current = new AbortController();
  const main = document.getElementById("main");
  const { view, params = {} } = resolve(location.hash);
  document.title = t("brand");
  renderNav();
  const focus = !first;
  first = false;
  Promise.resolve(view(main, { signal: current.signal, params, focus })).catch((error) => {
    fill(
      main,
      h("p", { class: "error", role: "alert", text: t("error.generic", { message: error.message }) }),
    );
  });
  // After a move within the page, a screen reader starts at the new view's heading
  // (the reader focuses its own once the storyboard is in).
  if (focus) main.querySelector("h1")?.focus();
}

window.addEventListener("hashchange", route);
route();
