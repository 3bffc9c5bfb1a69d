// "My work": the user's novels and jobs, newest first, a page at a time.
// Until the list endpoints exist on a server, their 404 (or 405) hides the section.

import { ApiError, api } from "./api.js";
import { fill, h, textLang } from "./dom.js";
import { number, t, when } from "./i18n.js";

const MISSING = new Set([404, 405]);

function statusBadge(status) {
  return h("span", { class: `badge status-${status}`, text: t(`status.${status}`) });
}

function novelItem(novel, titles, onDeleted) {
  titles.set(novel.novelId, novel.title);
  const links = [];
  if (novel.latestJobStatus === "completed") {
    links.push(
      h("a", {
        class: "button small",
        href: `#/read/novel/${encodeURIComponent(novel.novelId)}`,
        text: t("work.read"),
      }),
    );
  }
  if (novel.latestJobId) {
    links.push(
      h("a", {
        class: "button secondary small",
        href: `#/job/${encodeURIComponent(novel.latestJobId)}`,
        text: t("work.follow"),
      }),
    );
  }
  const analyze = h("button", { type: "button", class: "button secondary small", text: t("work.analyze") });
  analyze.addEventListener("click", async () => {
    analyze.disabled = true;
    try {
      const job = await api.analyze(novel.novelId);
      location.hash = `#/job/${encodeURIComponent(job.jobId)}`;
    } catch (failure) {
      onDeleted(null, failure);
      analyze.disabled = false;
    }
  });
  const remove = h("button", { type: "button", class: "button danger small", text: t("work.delete") });
  const item = h(
    "li",
    { class: "work-item", dataset: { novelId: novel.novelId } },
    h(
      "div",
      { class: "work-main" },
      h("span", { class: "work-title", lang: textLang(novel.title), text: novel.title }),
      h("span", {
        class: "work-meta",
        text: t("work.novelMeta", { chars: number(novel.chars), created: when(novel.createdAt) }),
      }),
      novel.latestJobStatus
        ? h("span", { class: "work-meta" }, `${t("work.latest")} `, statusBadge(novel.latestJobStatus))
        : null,
    ),
    h("div", { class: "work-actions" }, links, analyze, remove),
  );
  remove.addEventListener("click", async () => {
    if (!window.confirm(t("work.confirmDelete", { title: novel.title }))) return;
    remove.disabled = true;
    try {
      await api.deleteNovel(novel.novelId);
      item.remove();
      onDeleted(novel.title, null);
    } catch (failure) {
      remove.disabled = false;
      onDeleted(null, failure);
    }
  });
  return item;
}

function jobItem(job, titles) {
  const title = titles.get(job.novelId);
  return h(
    "li",
    { class: "work-item", dataset: { jobId: job.jobId } },
    h(
      "div",
      { class: "work-main" },
      h("a", {
        class: "work-title",
        href: `#/job/${encodeURIComponent(job.jobId)}`,
        lang: title ? textLang(title) : null,
        text: title ?? job.jobId,
      }),
      h(
        "span",
        { class: "work-meta" },
        statusBadge(job.status),
        ` ${t("work.jobMeta", {
          type: job.type,
          percent: job.progress?.percentage ?? 0,
          created: when(job.createdAt),
        })}`,
      ),
    ),
    job.status === "completed"
      ? h(
          "div",
          { class: "work-actions" },
          h("a", {
            class: "button small",
            href: `#/read/job/${encodeURIComponent(job.jobId)}`,
            text: t("work.read"),
          }),
        )
      : null,
  );
}

/** A list that shows one page of `load(cursor)` and a "load more" button for the next. */
function pagedList(id, heading, load, render, { onMissing, onError }) {
  const list = h("ul", { class: "work-list", id: `${id}-list` });
  const more = h("button", {
    type: "button",
    class: "button secondary",
    id: `${id}-more`,
    hidden: true,
    text: t("work.more"),
  });
  const empty = h("p", { class: "hint", hidden: true, text: t("work.none") });
  let cursor = null;
  const next = async () => {
    more.disabled = true;
    try {
      const page = await load(cursor);
      for (const record of page.items) list.append(render(record));
      cursor = page.nextCursor;
      more.hidden = !cursor;
      empty.hidden = list.children.length > 0;
      return true;
    } catch (failure) {
      if (failure instanceof ApiError && MISSING.has(failure.status)) onMissing();
      else if (failure.name !== "AbortError") onError(failure);
      return false;
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener("click", next);
  const element = h("div", { class: "work-part", id }, h("h3", { text: heading }), list, empty, more);
  return { element, next };
}

/** Fill `section` with the user's novels and jobs. Without the list endpoints it stays
 * hidden, or, on a page of its own (`standalone`), says there is nothing to show. */
export async function renderWork(section, { signal, standalone = false }) {
  const message = h("p", { class: "status", role: "status" });
  const titles = new Map();
  const report = (deleted, failure) => {
    message.className = failure ? "error" : "status";
    message.textContent = failure
      ? `${failure.code}: ${failure.message}`
      : t("work.deleted", { title: deleted });
  };
  let missing = 0;
  const handlers = {
    onMissing: () => {
      missing += 1;
    },
    onError: (failure) => report(null, failure),
  };
  const novels = pagedList(
    "novels",
    t("work.novels"),
    api.novels,
    (n) => novelItem(n, titles, report),
    handlers,
  );
  const jobs = pagedList("jobs", t("work.jobs"), api.jobs, (j) => jobItem(j, titles), handlers);
  const nothing = h("p", { class: "hint", hidden: true, text: t("work.none") });
  const heading = h(standalone ? "h1" : "h2", { id: "work-heading", tabIndex: -1, text: t("work.heading") });
  fill(section, heading, message, nothing, novels.element, jobs.element);
  // Novels first, so the jobs list can name each job's novel.
  const hasNovels = await novels.next();
  novels.element.hidden = !hasNovels;
  const hasJobs = await jobs.next();
  jobs.element.hidden = !hasJobs;
  if (signal.aborted) return;
  section.hidden = missing === 2 && !standalone;
  nothing.hidden = missing < 2;
}
