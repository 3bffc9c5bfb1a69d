// The storyboard as comic pages: one chapter at a time (a 120-chapter novel has about 800
// panels), a cast sidebar that highlights a character's panels, image prompts on demand,
// JSON export and print, where every scene gets a page of its own.

import { ApiError, api, call } from "./api.js";
import { fill, h, textLang } from "./dom.js";
import { t } from "./i18n.js";

const NARRATOR = "narrator";
// A line whose speaker the analyzer could not tell.
const UNKNOWN = "unknown";

function chaptersOf(storyboard) {
  const chapters = new Map();
  for (const scene of storyboard.scenes) {
    if (!chapters.has(scene.chapterIndex))
      chapters.set(scene.chapterIndex, { index: scene.chapterIndex, title: scene.chapterTitle, scenes: [] });
    chapters.get(scene.chapterIndex).scenes.push(scene);
  }
  return [...chapters.values()].sort((a, b) => a.index - b.index);
}

function fileName(title) {
  // Characters no file system takes, and control characters, become "_".
  const safe = title
    .replace(/[\\/:*?"<>|\u0000-\u001f\u007f]/g, "_")
    .trim()
    .slice(0, 80);
  return `${safe || "storyboard"}.storyboard.json`;
}

async function copyText(text, source) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No Clipboard API here (or no permission): select the text and try the old command.
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try {
      return document.execCommand("copy");
    } catch {
      return false;
    }
  }
}

function castCount(count) {
  if (count === 0) return t("reader.castAbsent");
  return count === 1 ? t("reader.castOne") : t("reader.castCount", { count });
}

class Reader {
  constructor(storyboard, raw, { kind, id, chapter }) {
    this.storyboard = storyboard;
    this.raw = raw;
    this.kind = kind;
    this.ownerId = id;
    this.lang = textLang(storyboard.title, ...storyboard.scenes.slice(0, 3).map((s) => s.summary));
    this.names = new Map(storyboard.characters.map((c) => [c.id, c.name]));
    this.chapters = chaptersOf(storyboard);
    const wanted = this.chapters.findIndex((c) => String(c.index) === String(chapter));
    this.position = Math.max(0, wanted);
    this.highlight = null;
    this.panelCount = 0;
  }

  get chapter() {
    return this.chapters[this.position];
  }

  render(main) {
    const s = this.storyboard;
    const panels = s.scenes.reduce((sum, scene) => sum + scene.panels.length, 0);
    this.scenes = h("div", { class: "scenes", id: "scenes", lang: this.lang });
    this.status = h("p", { class: "sr-status", id: "reader-status", role: "status" });
    this.castList = h("ul", { class: "cast-list", id: "cast-list" });
    this.chapterInfo = h("p", { class: "chapter-info", id: "chapter-info", "aria-live": "polite" });
    const head = h(
      "header",
      { class: "reader-head" },
      h(
        "div",
        {},
        h("h1", { id: "reader-title", tabIndex: -1, lang: this.lang, text: s.title }),
        h("p", {
          class: "meta",
          text: [
            t("reader.meta", {
              chapters: this.chapters.length,
              scenes: s.scenes.length,
              panels,
              characters: s.characters.length,
            }),
            t("reader.madeBy", { analyzer: s.meta?.analyzer ?? "?" }),
          ].join(" · "),
        }),
      ),
      h(
        "div",
        { class: "reader-actions" },
        h("button", {
          type: "button",
          class: "button secondary",
          id: "export-json",
          text: t("reader.export"),
          on: { click: () => this.exportJson() },
        }),
        h("button", {
          type: "button",
          class: "button secondary",
          id: "print",
          text: t("reader.print"),
          on: { click: () => window.print() },
        }),
      ),
    );
    const body = h(
      "div",
      { class: "reader-body" },
      h("div", { class: "reader-main" }, this.chapterNav(), this.chapterInfo, this.status, this.scenes),
      h(
        "aside",
        { class: "cast", "aria-labelledby": "cast-heading" },
        h("h2", { id: "cast-heading", text: `${t("reader.cast")} (${s.characters.length})` }),
        h("p", { class: "hint", text: t("reader.castHint") }),
        this.castList,
      ),
    );
    fill(main, h("article", { class: "reader" }, head, body));
    document.title = `${s.title} · ${t("brand")}`;
    this.showChapter();
  }

  chapterNav() {
    this.select = h(
      "select",
      { id: "chapter-select" },
      this.chapters.map((c, i) =>
        h("option", {
          value: String(i),
          text: t("reader.chapterOption", { index: c.index, title: c.title }),
        }),
      ),
    );
    this.select.addEventListener("change", () => this.goTo(Number(this.select.value)));
    this.prev = h("button", {
      type: "button",
      class: "button secondary",
      id: "chapter-prev",
      "aria-label": t("reader.prev"),
      text: "‹",
    });
    this.next = h("button", {
      type: "button",
      class: "button secondary",
      id: "chapter-next",
      "aria-label": t("reader.next"),
      text: "›",
    });
    this.prev.addEventListener("click", () => this.goTo(this.position - 1));
    this.next.addEventListener("click", () => this.goTo(this.position + 1));
    return h(
      "nav",
      { class: "chapter-nav", "aria-label": t("reader.chapters") },
      this.prev,
      h("label", { for: "chapter-select", text: t("reader.chapter") }),
      this.select,
      this.next,
    );
  }

  goTo(position) {
    if (position < 0 || position >= this.chapters.length) return;
    this.position = position;
    // The chapter goes in the address without a hashchange, so the storyboard is not reloaded.
    history.replaceState(
      null,
      "",
      `#/read/${this.kind}/${encodeURIComponent(this.ownerId)}/${this.chapter.index}`,
    );
    this.showChapter();
    this.scenes.scrollIntoView({ block: "start" });
  }

  showChapter() {
    const chapter = this.chapter;
    if (!chapter) {
      fill(this.scenes, h("p", { class: "hint", text: t("reader.empty") }));
      return;
    }
    this.select.value = String(this.position);
    this.prev.disabled = this.position === 0;
    this.next.disabled = this.position === this.chapters.length - 1;
    this.panelCount = chapter.scenes.reduce((sum, scene) => sum + scene.panels.length, 0);
    this.chapterInfo.textContent = t("reader.chapterInfo", {
      index: chapter.index,
      count: this.chapters.length,
      scenes: chapter.scenes.length,
      panels: this.panelCount,
    });
    fill(
      this.scenes,
      chapter.scenes.map((scene, i) => this.sceneElement(scene, i + 1)),
    );
    this.renderCast();
    this.applyHighlight();
  }

  /** Every chapter at once, for printing; the screen goes back to one chapter after. */
  showAll() {
    fill(
      this.scenes,
      this.chapters.flatMap((c) => c.scenes.map((scene, i) => this.sceneElement(scene, i + 1))),
    );
    this.applyHighlight();
  }

  sceneElement(scene, number) {
    let panelNumber = 0;
    return h(
      "section",
      {
        class: "scene",
        id: `scene-${scene.id}`,
        "aria-labelledby": `scene-${scene.id}-heading`,
        dataset: { sceneId: scene.id },
      },
      h(
        "header",
        { class: "scene-head" },
        h(
          "p",
          { class: "scene-chapter" },
          h("span", { class: "print-only", text: `${this.storyboard.title} · ` }),
          scene.chapterTitle,
        ),
        h("h2", { id: `scene-${scene.id}-heading`, text: t("reader.scene", { number }) }),
        h(
          "p",
          { class: "scene-location" },
          h("span", { class: "label", text: t("label", { label: t("reader.location") }) }),
          scene.location,
        ),
        h("p", { class: "scene-summary", text: scene.summary }),
      ),
      h(
        "div",
        { class: "panels" },
        scene.panels.map((panel) => this.panelElement(panel, (panelNumber += 1))),
      ),
    );
  }

  speaker(id) {
    if (id === NARRATOR) return t("reader.narrator");
    if (id === UNKNOWN) return t("reader.unknownSpeaker");
    return this.names.get(id) ?? id;
  }

  panelElement(panel, number) {
    const ids = panel.characterIds ?? [];
    return h(
      "article",
      {
        class: "panel",
        id: `panel-${panel.id}`,
        "aria-label": t("reader.panel", { number }),
        dataset: { panelId: panel.id, characters: ids.join(" ") },
      },
      h(
        "header",
        { class: "panel-head" },
        h("span", { class: "panel-number", text: `#${number}` }),
        h("span", {
          class: `shot shot-${panel.shotType}`,
          lang: document.documentElement.lang,
          text: t(`shot.${panel.shotType}`),
        }),
      ),
      panel.narration ? h("p", { class: "caption", text: panel.narration }) : null,
      h("p", { class: "description", text: panel.description }),
      (panel.dialogue ?? []).map((line) =>
        h(
          "div",
          {
            class: `balloon${line.speakerId === NARRATOR ? " narrator" : ""}`,
            dataset: { speakerId: line.speakerId },
          },
          h("span", { class: "speaker", text: this.speaker(line.speakerId) }),
          h("p", { class: "speech", text: line.text }),
        ),
      ),
      ids.length
        ? h(
            "p",
            { class: "panel-cast" },
            h("span", {
              class: "label",
              lang: document.documentElement.lang,
              text: t("label", { label: t("reader.inPanel") }),
            }),
            ids.map((id) =>
              h("span", { class: "chip", dataset: { characterId: id }, text: this.speaker(id) }),
            ),
          )
        : null,
      this.promptElement(panel),
    );
  }

  promptElement(panel) {
    const promptId = `prompt-${panel.id}`;
    const text = h("p", { class: "prompt-text", id: `${promptId}-text`, text: panel.imagePrompt });
    const done = h("span", { class: "copy-status", "aria-live": "polite" });
    const copy = h("button", {
      type: "button",
      class: "button secondary small copy",
      text: t("reader.copy"),
    });
    const box = h(
      "div",
      { class: "prompt", id: promptId, hidden: true },
      text,
      h("div", { class: "prompt-actions" }, copy, done),
    );
    const toggle = h("button", {
      type: "button",
      class: "button link small prompt-toggle",
      "aria-expanded": "false",
      "aria-controls": promptId,
      text: t("reader.prompt"),
    });
    toggle.addEventListener("click", () => {
      box.hidden = !box.hidden;
      toggle.setAttribute("aria-expanded", String(!box.hidden));
      toggle.textContent = box.hidden ? t("reader.prompt") : t("reader.hidePrompt");
    });
    copy.addEventListener("click", async () => {
      done.textContent = (await copyText(panel.imagePrompt, text))
        ? t("reader.copied")
        : t("reader.copyFailed");
    });
    return h("footer", { class: "panel-foot" }, toggle, box);
  }

  renderCast() {
    const counts = new Map();
    for (const scene of this.chapter.scenes) {
      for (const panel of scene.panels)
        for (const id of panel.characterIds ?? []) counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    // Who is in the chapter on screen comes first; a long cast (206 in the Sanguo) would
    // otherwise bury them.
    const cast = [...this.storyboard.characters].sort(
      (a, b) => Number(counts.has(b.id)) - Number(counts.has(a.id)),
    );
    fill(
      this.castList,
      cast.map((c) => {
        const present = counts.has(c.id);
        const button = h(
          "button",
          {
            type: "button",
            class: `cast-member${present ? "" : " is-absent"}`,
            "aria-pressed": String(this.highlight === c.id),
            dataset: { characterId: c.id },
          },
          h("span", { class: "cast-name", lang: textLang(c.name), text: c.name }),
          c.aliases?.length
            ? h("span", {
                class: "cast-aliases",
                text: t("reader.aliases", { aliases: c.aliases.join(", ") }),
              })
            : null,
          c.description
            ? h(
                "span",
                { class: "cast-appearance" },
                h("span", { class: "label", text: t("label", { label: t("reader.appearance") }) }),
                c.description,
              )
            : null,
          h("span", { class: "cast-count", text: castCount(counts.get(c.id) ?? 0) }),
        );
        button.addEventListener("click", () => this.toggleHighlight(c.id));
        return h("li", {}, button);
      }),
    );
  }

  toggleHighlight(id) {
    this.highlight = this.highlight === id ? null : id;
    for (const button of this.castList.querySelectorAll(".cast-member")) {
      button.setAttribute("aria-pressed", String(button.dataset.characterId === this.highlight));
    }
    const count = this.applyHighlight();
    this.status.textContent = this.highlight
      ? t("reader.highlighted", { name: this.names.get(this.highlight), count, total: this.panelCount })
      : t("reader.cleared");
  }

  applyHighlight() {
    let count = 0;
    this.scenes.classList.toggle("has-highlight", Boolean(this.highlight));
    for (const panel of this.scenes.querySelectorAll(".panel")) {
      const on = Boolean(this.highlight) && panel.dataset.characters.split(" ").includes(this.highlight);
      panel.classList.toggle("is-highlighted", on);
      count += on ? 1 : 0;
    }
    return count;
  }

  exportJson() {
    const url = URL.createObjectURL(new Blob([this.raw], { type: "application/json" }));
    const link = h("a", { href: url, download: fileName(this.storyboard.title), hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
}

/** The reader page for a job's or a novel's storyboard. */
export async function renderReader(main, { signal, params, focus }) {
  const { kind, id, chapter } = params;
  let raw;
  try {
    raw = await (await call(api.storyboardUrl(kind, id), { signal })).text();
  } catch (failure) {
    if (signal.aborted) return;
    const pending = failure instanceof ApiError && failure.code === "storyboard_pending";
    fill(
      main,
      h(
        "section",
        { class: "card" },
        h("h1", { tabIndex: -1, text: pending ? t("reader.pending") : t("error.generic", { message: "" }) }),
        h("p", { class: "error", role: "alert", text: `${failure.code}: ${failure.message}` }),
        pending && kind === "job"
          ? h("a", { class: "button", href: `#/job/${encodeURIComponent(id)}`, text: t("reader.followJob") })
          : null,
      ),
    );
    return;
  }
  if (signal.aborted) return;
  const reader = new Reader(JSON.parse(raw), raw, { kind, id, chapter });
  reader.render(main);
  if (focus) document.getElementById("reader-title").focus();
  // Printing takes every chapter, one scene a page; the screen keeps its one chapter.
  const before = () => reader.showAll();
  const after = () => reader.showChapter();
  window.addEventListener("beforeprint", before);
  window.addEventListener("afterprint", after);
  signal.addEventListener(
    "abort",
    () => {
      window.removeEventListener("beforeprint", before);
      window.removeEventListener("afterprint", after);
    },
    { once: true },
  );
}
