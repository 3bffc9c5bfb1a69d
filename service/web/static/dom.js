// Every element of the page is built here, with createElement and textContent: text from
// the API (a novel's title, names, dialogue) never passes through an HTML parser.

const FORBIDDEN = new Set(["innerHTML", "outerHTML", "srcdoc"]);

function setProp(el, key, value) {
  // Enumerated, not boolean: false must be written out, not left to the default.
  if (key === "spellcheck") return el.setAttribute(key, String(value));
  if (value === null || value === undefined || value === false) return;
  if (FORBIDDEN.has(key) || /^on./i.test(key)) throw new Error(`refusing to set ${key}`);
  if (key === "class") el.className = value;
  else if (key === "text") el.textContent = value;
  else if (key === "on") for (const [name, fn] of Object.entries(value)) el.addEventListener(name, fn);
  else if (key === "dataset") Object.assign(el.dataset, value);
  else if (key.includes("-") || !(key in el)) el.setAttribute(key, value === true ? "" : String(value));
  else el[key] = value;
}

/** An element: `h("p", {class: "x", on: {click}}, "text", child, [more])`. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) setProp(el, key, value);
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const CJK = /[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]/;

/** A `lang` value for a piece of the novel's own text: Chinese when it has CJK in it. */
export function textLang(...texts) {
  return texts.some((text) => CJK.test(text || "")) ? "zh" : "en";
}

/** Resolve after `ms`, or at once when `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}
