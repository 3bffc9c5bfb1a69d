// Every call to the API. The credential, when the service asks for one, lives in this
// tab's sessionStorage and goes out only as an Authorization header, never in a URL.

import { askForToken } from "./auth.js";
import { t } from "./i18n.js";

const TOKEN_KEY = "storyboard.token";
const MAX_ASKS = 3;

/** An error answer of the API (`{"error": {"code", "message"}}`), or a network failure. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function hasToken() {
  return Boolean(sessionStorage.getItem(TOKEN_KEY));
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
}

function withCredential(headers) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...headers, Authorization: `Bearer ${token}` } : headers;
}

// Several calls answered 401 at once share one question.
let asking = null;

function askOnce(refused) {
  asking ??= askForToken(refused).then((token) => {
    asking = null;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    return Boolean(token);
  });
  return asking;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body && body.error && typeof body.error.message === "string") {
      return new ApiError(response.status, String(body.error.code), body.error.message);
    }
  } catch {
    // Not our JSON (a proxy's page): fall through to the status line.
  }
  return new ApiError(
    response.status,
    `http_${response.status}`,
    response.statusText || `HTTP ${response.status}`,
  );
}

/** `fetch` on the API: asks for a credential on 401, throws ApiError on any error answer. */
export async function call(path, { method = "GET", body, headers = {}, signal } = {}) {
  for (let asked = 0; ; asked += 1) {
    const sent = sessionStorage.getItem(TOKEN_KEY);
    let response;
    try {
      response = await fetch(path, {
        method,
        body,
        signal,
        headers: withCredential(headers),
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "network_error", t("error.network"));
    }
    if (response.status === 401 && asked < MAX_ASKS) {
      // Another call may have signed in meanwhile: then just retry with its credential.
      const changed = sessionStorage.getItem(TOKEN_KEY) !== sent;
      if (changed || (await askOnce(Boolean(sent)))) continue;
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }
}

/** `call`, then the answer's JSON (null for 204). */
export async function json(path, options) {
  const response = await call(path, options);
  return response.status === 204 ? null : response.json();
}

const id = (value) => encodeURIComponent(value);

export const api = {
  upload(body, { title, plain }) {
    const query = title ? `?title=${encodeURIComponent(title)}` : "";
    // A file goes as its bytes, so the server detects UTF-8, GB18030 or UTF-16;
    // pasted text is UTF-8 and says so.
    const type = plain ? "text/plain; charset=utf-8" : "text/plain";
    return json(`/v1/novels${query}`, { method: "POST", body, headers: { "Content-Type": type } });
  },
  analyze: (novelId) => json(`/v1/novels/${id(novelId)}/analyze`, { method: "POST" }),
  novel: (novelId) => json(`/v1/novels/${id(novelId)}`),
  job: (jobId) => json(`/v1/jobs/${id(jobId)}`),
  cancel: (jobId) => json(`/v1/jobs/${id(jobId)}/cancel`, { method: "POST" }),
  deleteNovel: (novelId) => call(`/v1/novels/${id(novelId)}`, { method: "DELETE" }),
  novels: (cursor) => json(`/v1/novels?limit=20${cursor ? `&cursor=${id(cursor)}` : ""}`),
  jobs: (cursor) => json(`/v1/jobs?limit=20${cursor ? `&cursor=${id(cursor)}` : ""}`),
  storyboardUrl: (kind, ownerId) => `/v1/${kind === "job" ? "jobs" : "novels"}/${id(ownerId)}/storyboard`,
  events: (jobId, lastEventId, signal) =>
    call(`/v1/jobs/${id(jobId)}/events`, {
      signal,
      headers: { Accept: "text/event-stream", ...(lastEventId ? { "Last-Event-ID": lastEventId } : {}) },
    }),
};

/** The Server-Sent Events of a `fetch` answer's body, as `{event, data, id}`. */
export async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "";
  let data = [];
  let lastId = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let match;
      while ((match = /\r\n|\r|\n/.exec(buffer))) {
        // A lone \r at the end may be the first half of a \r\n still on its way.
        if (match[0] === "\r" && match.index === buffer.length - 1) break;
        const line = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        if (line === "") {
          if (data.length) yield { event: event || "message", data: data.join("\n"), id: lastId };
          event = "";
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event = text;
          else if (field === "data") data.push(text);
          else if (field === "id") lastId = text;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
