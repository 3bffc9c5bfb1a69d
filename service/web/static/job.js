// Following one job live: its Server-Sent Events through fetch (an EventSource could not
// send the Authorization header), reconnecting with Last-Event-ID when the stream drops,
// and reading the job every few seconds only from a server that has no event stream.

import { ApiError, api, serverSentEvents } from "./api.js";
import { fill, h, sleep, textLang } from "./dom.js";
import { t, when } from "./i18n.js";

const LIVE = new Set(["queued", "running", "retrying"]);
const RECONNECT_MS = [1000, 2000, 5000, 10000];
const POLL_MS = 2000;

function panel() {
  const heading = h("h1", { id: "job-heading", tabIndex: -1, text: t("job.heading") });
  const novelTitle = h("p", { class: "job-novel", id: "job-novel" });
  const bar = h("progress", {
    id: "job-progress",
    max: 100,
    value: 0,
    "aria-labelledby": "job-progress-label",
  });
  const line = h("p", { class: "job-line", id: "job-line", "aria-live": "polite" });
  const retry = h("p", { class: "notice", id: "job-retry", hidden: true, "aria-live": "polite" });
  const outcome = h("div", { class: "outcome", id: "job-outcome", role: "status" });
  const connection = h("p", { class: "hint", id: "job-connection", "aria-live": "polite" });
  const facts = h("dl", { class: "facts", id: "job-facts" });
  const actions = h("div", { class: "actions", id: "job-actions" });
  const history = h("ol", { class: "history", id: "job-history" });
  const element = h(
    "section",
    { class: "job card", "aria-labelledby": "job-heading" },
    heading,
    novelTitle,
    h("p", { class: "field-label", id: "job-progress-label", text: t("job.progress") }),
    bar,
    line,
    retry,
    outcome,
    connection,
    actions,
    facts,
    h("h2", { class: "small-heading", text: t("job.history") }),
    history,
  );
  return { element, novelTitle, bar, line, retry, outcome, connection, facts, actions, history };
}

function errorText(error) {
  return error ? `${error.code}: ${error.message}` : "";
}

function countdown(iso) {
  const seconds = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  return seconds > 0 ? t("job.inSeconds", { seconds }) : t("job.now");
}

class JobView {
  constructor(jobId, signal) {
    this.jobId = jobId;
    this.signal = signal;
    this.ui = panel();
    this.last = null;
    this.timer = setInterval(() => this.showRetry(), 1000);
    signal.addEventListener("abort", () => clearInterval(this.timer), { once: true });
  }

  show(job) {
    if (this.last && job.updatedAt < this.last.updatedAt) return; // an older state, late
    const changed = !this.last || this.last.status !== job.status || this.last.attempts !== job.attempts;
    this.last = job;
    const { bar, line, facts } = this.ui;
    const percent = job.progress?.percentage ?? 0;
    bar.value = percent;
    bar.setAttribute("aria-valuetext", `${percent} %`);
    bar.dataset.status = job.status;
    line.textContent = t("job.line", {
      status: t(`status.${job.status}`),
      percent,
      stage: job.progress?.stage ?? "",
    });
    fill(
      facts,
      [
        ["job.status", t(`status.${job.status}`)],
        ["job.stage", job.progress?.stage ?? ""],
        ["job.attempts", String(job.attempts)],
        ["job.created", when(job.createdAt)],
        ["job.updated", when(job.updatedAt)],
      ].map(([key, value]) => [h("dt", { text: t(key) }), h("dd", { text: value })]),
    );
    if (changed) this.ui.history.append(this.historyItem(job));
    this.showRetry();
    this.showOutcome(job);
  }

  historyItem(job) {
    const parts = [when(job.updatedAt)];
    if (job.error) parts.push(errorText(job.error));
    if (job.status === "retrying" && job.nextAttemptAt)
      parts.push(t("job.nextAttempt", { time: when(job.nextAttemptAt) }));
    return h(
      "li",
      {},
      h("span", { class: `badge status-${job.status}`, text: t(`status.${job.status}`) }),
      ` ${parts.join(" · ")}`,
    );
  }

  showRetry() {
    const job = this.last;
    const { retry } = this.ui;
    retry.hidden = !job || job.status !== "retrying";
    if (retry.hidden) return;
    const vars = { attempts: job.attempts, error: errorText(job.error) || "?" };
    retry.textContent = job.nextAttemptAt
      ? t("job.retrying", { ...vars, time: when(job.nextAttemptAt), countdown: countdown(job.nextAttemptAt) })
      : t("job.retryingSoon", vars);
  }

  showOutcome(job) {
    const { outcome, actions } = this.ui;
    actions.replaceChildren();
    outcome.className = `outcome status-${job.status}`;
    if (LIVE.has(job.status)) {
      outcome.replaceChildren();
      const cancel = h("button", {
        type: "button",
        class: "button danger",
        id: "job-cancel",
        text: t("job.cancel"),
      });
      cancel.addEventListener("click", () => this.cancel(cancel));
      actions.append(cancel);
      return;
    }
    if (job.status === "completed") {
      const s = job.summary ?? {};
      outcome.textContent = t("job.completed", {
        chapters: s.chapters ?? "?",
        scenes: s.scenes ?? "?",
        panels: s.panels ?? "?",
        characters: s.characters ?? "?",
      });
      actions.append(
        h("a", {
          class: "button",
          id: "job-read",
          href: `#/read/job/${encodeURIComponent(job.jobId)}`,
          text: t("job.read"),
        }),
      );
    } else if (job.status === "failed") {
      fill(
        outcome,
        h(
          "p",
          { class: "error", role: "alert" },
          t("job.failed", { code: job.error?.code ?? "?", message: job.error?.message ?? "" }),
        ),
      );
    } else {
      outcome.textContent = t("job.cancelled");
    }
    const again = h("button", {
      type: "button",
      class: "button secondary",
      id: "job-again",
      text: t("job.again"),
    });
    again.addEventListener("click", () => this.analyzeAgain(again));
    actions.append(again);
  }

  async cancel(button) {
    button.disabled = true;
    button.textContent = t("job.cancelling");
    try {
      this.show(await api.cancel(this.jobId));
    } catch (failure) {
      this.ui.connection.textContent = `${failure.code}: ${failure.message}`;
      button.disabled = false;
      button.textContent = t("job.cancel");
    }
  }

  async analyzeAgain(button) {
    button.disabled = true;
    try {
      const job = await api.analyze(this.last.novelId);
      location.hash = `#/job/${encodeURIComponent(job.jobId)}`;
    } catch (failure) {
      this.ui.connection.textContent = `${failure.code}: ${failure.message}`;
      button.disabled = false;
    }
  }

  /** Follow the event stream until a final event, reconnecting after drops. */
  async follow() {
    let lastEventId = "";
    for (let failures = 0; !this.signal.aborted; failures += 1) {
      try {
        const response = await api.events(this.jobId, lastEventId, this.signal);
        if (response.status === 204) return this.show(await api.job(this.jobId)); // ended, seen
        this.ui.connection.textContent = "";
        for await (const event of serverSentEvents(response.body)) {
          lastEventId = event.id || lastEventId;
          failures = 0;
          this.show(JSON.parse(event.data));
          if (event.event !== "progress" && !LIVE.has(this.last.status)) return;
        }
      } catch (failure) {
        if (this.signal.aborted) return;
        const refused = failure instanceof ApiError && failure.status >= 400 && failure.status < 500;
        // The job was just read, so a 404 here means a server without the event stream.
        if (refused && !lastEventId && [404, 405].includes(failure.status)) return this.poll();
        // No such job (or not ours): reconnecting will not change that.
        if (refused) throw failure;
      }
      if (this.signal.aborted) return;
      this.ui.connection.textContent = t("job.reconnecting");
      await sleep(RECONNECT_MS[Math.min(failures, RECONNECT_MS.length - 1)], this.signal);
    }
  }

  /** Read the job every few seconds: for a server that has no event stream. */
  async poll() {
    while (!this.signal.aborted && LIVE.has(this.last.status)) {
      await sleep(POLL_MS, this.signal);
      if (this.signal.aborted) return;
      try {
        this.show(await api.job(this.jobId));
        this.ui.connection.textContent = "";
      } catch (failure) {
        if (failure instanceof ApiError && failure.status >= 400 && failure.status < 500) throw failure;
        this.ui.connection.textContent = t("job.reconnecting");
      }
    }
  }
}

/** The job page: progress bar, stage, retries, cancel, and the outcome. */
export async function renderJob(main, { signal, params }) {
  const view = new JobView(params.jobId, signal);
  fill(main, view.ui.element);
  try {
    const job = await api.job(params.jobId);
    view.show(job);
    api
      .novel(job.novelId)
      .then((novel) => {
        view.ui.novelTitle.lang = textLang(novel.title);
        view.ui.novelTitle.textContent = t("job.of", { title: novel.title });
        document.title = `${novel.title} · ${t("brand")}`;
      })
      .catch(() => {});
    if (LIVE.has(job.status)) await view.follow();
  } catch (failure) {
    if (signal.aborted) return;
    fill(
      view.ui.outcome,
      h("p", { class: "error", role: "alert", text: `${failure.code}: ${failure.message}` }),
    );
  }
}
