// The start page: upload a novel (a file, dropped or chosen, or pasted text) and start it.

import { api } from "./api.js";
import { fill, h } from "./dom.js";
import { bytes, t } from "./i18n.js";
import { renderWork } from "./work.js";

const ENCODING_SUFFIX = /\.(?:utf-?8|utf-?16(?:le|be)?|gb18030|gbk|gb2312|big5)$/i;

/** `sanguo-yanyi.gb18030.txt` → `sanguo-yanyi`: the file's name as a title. */
export function titleFromFileName(name) {
  return name
    .replace(/\.txt$/i, "")
    .replace(ENCODING_SUFFIX, "")
    .trim();
}

function dropZone(fileInput, onChange) {
  const zone = h(
    "div",
    { class: "drop-zone", id: "drop-zone" },
    h("label", { for: "file", class: "drop-label", text: t("upload.drop") }),
    fileInput,
  );
  const over = (on) => (event) => {
    event.preventDefault();
    zone.classList.toggle("is-over", on);
  };
  zone.addEventListener("dragenter", over(true));
  zone.addEventListener("dragover", over(true));
  zone.addEventListener("dragleave", over(false));
  zone.addEventListener("drop", (event) => {
    over(false)(event);
    if (event.dataTransfer?.files.length) {
      fileInput.files = event.dataTransfer.files;
      onChange();
    }
  });
  return zone;
}

function form(onSubmit) {
  const title = h("input", {
    id: "title",
    name: "title",
    type: "text",
    maxLength: 500,
    autocomplete: "off",
    "aria-describedby": "title-hint",
  });
  const file = h("input", {
    id: "file",
    name: "file",
    type: "file",
    accept: ".txt,text/plain",
    "aria-describedby": "file-hint",
  });
  const chosen = h("p", { class: "chosen", id: "file-chosen", "aria-live": "polite" });
  const clear = h("button", {
    type: "button",
    class: "button secondary small",
    hidden: true,
    text: t("upload.clearFile"),
  });
  const text = h("textarea", { id: "text", name: "text", rows: 6, spellcheck: false });
  const error = h("div", { class: "error", id: "upload-error", role: "alert" });
  const status = h("p", { class: "status", id: "upload-status", "aria-live": "polite" });
  const submit = h("button", {
    type: "submit",
    class: "button",
    id: "upload-submit",
    text: t("upload.submit"),
  });
  let suggested = "";
  const showFile = () => {
    const picked = file.files[0];
    // The file's name fills an empty title (or one it filled before); the user's own stays.
    if (!title.value.trim() || title.value === suggested) {
      suggested = picked ? titleFromFileName(picked.name) : "";
      title.value = suggested;
    }
    chosen.textContent = picked ? t("upload.chosen", { name: picked.name, size: bytes(picked.size) }) : "";
    clear.hidden = !picked;
  };
  file.addEventListener("change", showFile);
  clear.addEventListener("click", () => {
    file.value = "";
    showFile();
  });
  const element = h(
    "form",
    { class: "upload-form", id: "upload-form", novalidate: true },
    h("label", { for: "title", text: t("upload.title") }),
    title,
    h("p", { class: "hint", id: "title-hint", text: t("upload.titleHint") }),
    h("p", { class: "field-label", text: t("upload.file") }),
    dropZone(file, showFile),
    h("div", { class: "chosen-row" }, chosen, clear),
    h("p", { class: "hint", id: "file-hint", text: t("upload.fileHint") }),
    h("label", { for: "text", text: t("upload.text") }),
    text,
    h("div", { class: "actions" }, submit, status),
    error,
  );
  element.addEventListener("submit", (event) => {
    event.preventDefault();
    onSubmit({ title: title.value.trim(), file: file.files[0], text: text.value }, { error, status, submit });
  });
  return element;
}

async function start(input, { error, status, submit }) {
  error.replaceChildren();
  if (!input.file && !input.text.trim()) {
    error.textContent = t("upload.nothing");
    return;
  }
  submit.disabled = true;
  try {
    status.textContent = t("upload.uploading");
    const body = input.file ?? input.text;
    const novel = await api.upload(body, { title: input.title, plain: !input.file });
    status.textContent = t("upload.starting");
    const job = await api.analyze(novel.novelId);
    location.hash = `#/job/${encodeURIComponent(job.jobId)}`;
  } catch (failure) {
    status.textContent = "";
    // The API's own words: 413, 415 and 422 each say what was wrong with the upload.
    fill(error, failure.code ? h("strong", { text: `${failure.code}: ` }) : null, failure.message);
  } finally {
    submit.disabled = false;
  }
}

/** The start page: the upload form, then the user's work. */
export function renderHome(main, { signal }) {
  const section = h(
    "section",
    { class: "upload card", "aria-labelledby": "upload-heading" },
    h("h1", { id: "upload-heading", tabIndex: -1, text: t("upload.heading") }),
    h("p", { class: "intro", text: t("upload.intro") }),
    form(start),
  );
  const work = h("section", {
    class: "work card",
    id: "work",
    "aria-labelledby": "work-heading",
    hidden: true,
  });
  fill(main, section, work);
  renderWork(work, { signal });
}
