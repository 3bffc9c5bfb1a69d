// The one question the page asks when the API answers 401: an API key or token.

import { h } from "./dom.js";
import { t } from "./i18n.js";

/** Ask for a credential in a modal dialog; resolves to it, or to null when cancelled. */
export function askForToken(refused) {
  return new Promise((resolve) => {
    const input = h("input", {
      id: "auth-token",
      name: "token",
      type: "password",
      required: true,
      autocomplete: "off",
      spellcheck: false,
      "aria-describedby": "auth-explain",
    });
    const cancel = h("button", { type: "button", class: "button secondary", text: t("auth.cancel") });
    const form = h(
      "form",
      { method: "dialog", class: "auth-form" },
      h("h2", { id: "auth-heading", text: t("auth.heading") }),
      h("p", { id: "auth-explain", text: t("auth.explain") }),
      refused ? h("p", { class: "error", role: "alert", text: t("auth.refused") }) : null,
      h("label", { for: "auth-token", text: t("auth.label") }),
      input,
      h(
        "div",
        { class: "actions" },
        cancel,
        h("button", { type: "submit", class: "button", text: t("auth.submit") }),
      ),
    );
    const dialog = h("dialog", { class: "auth-dialog", "aria-labelledby": "auth-heading" }, form);
    let answer = null;
    form.addEventListener("submit", () => {
      answer = input.value.trim() || null;
    });
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(answer);
    });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}
