// Settings → API Keys: a plain script over the server's JSON API (no framework, no build step).
//
// Safety rules this file keeps:
// * the access token lives in the variable `session` only: never in a URL, a cookie,
//   localStorage or sessionStorage, so it is gone when the tab is closed or reloaded;
// * a new or rotated key is shown once and kept only in the DOM of the "new key" panel, which
//   is emptied when dismissed, on sign-out and when the page is hidden;
// * every text from the server or the user goes into the page through textContent, never as
//   HTML (the Content-Security-Policy also requires Trusted Types for any HTML sink).
"use strict";

(() => {
  const API = "/api";
  const AUDIT_PAGE = 20;

  /** The signed-in session: `{token, email, scopes}`, or null. */
  let session = null;
  /** The keys as last listed (what the page shows). */
  let keys = [];
  /** The action a confirmation dialog runs. */
  let pending = null;
  /** When the login throttle lets the next attempt through (ms since the epoch), or 0. */
  let waitUntil = 0;
  let waitTimer = 0;

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child);
    }
    return node;
  };

  // --- Talking to the API -------------------------------------------------------------------

  /** An answer of the API that is not a success. */
  class ApiError extends Error {
    constructor(status, detail, retryAfter) {
      super(detail);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  /** The API's `detail` in words: a string as given, a FastAPI-style list one issue a line. */
  function describeDetail(detail, status) {
    if (typeof detail === "string" && detail) return detail;
    if (Array.isArray(detail) && detail.length) {
      return detail
        .map((issue) => {
          const loc = Array.isArray(issue.loc) ? issue.loc.filter((p) => p !== "body") : [];
          const where = loc.length ? `${loc.join(".")}: ` : "";
          return `${where}${issue.msg || "invalid value"}`;
        })
        .join("\n");
    }
    return `The server answered ${status}.`;
  }

  /**
   * Calls the API. `auth`: send the session's token. Answers the parsed JSON body (or null
   * for 204). A 401 on an authenticated call ends the session (see `sessionExpired`).
   */
  async function call(method, path, { body, auth = true } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth) {
      if (!session) throw new ApiError(401, "Not signed in.");
      headers.Authorization = `Bearer ${session.token}`;
    }
    let response;
    try {
      response = await fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
        referrerPolicy: "no-referrer",
      });
    } catch {
      throw new ApiError(0, "The server cannot be reached. Check your connection and try again.");
    }
    let json = null;
    if (response.status !== 204) {
      try {
        json = await response.json();
      } catch {
        json = null;
      }
    }
    if (response.ok) return json;
    const retryAfter = Number.parseInt(response.headers.get("Retry-After") || "", 10);
    const error = new ApiError(
      response.status,
      describeDetail(json && json.detail, response.status),
      Number.isFinite(retryAfter) ? retryAfter : null,
    );
    if (auth && response.status === 401) {
      sessionExpired();
    }
    throw error;
  }

  // --- Messages -----------------------------------------------------------------------------

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
  }

  function clearError() {
    const box = $("error");
    box.textContent = "";
    box.hidden = true;
  }

  /** Shows what went wrong, unless it was an expired session (sign-in says that). */
  function report(error) {
    if (error instanceof ApiError && error.status === 401 && !session) return;
    showError(error instanceof ApiError ? error.message : String(error));
  }

  // --- Times --------------------------------------------------------------------------------

  const relative = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
  const exact = new Intl.DateTimeFormat("en", { dateStyle: "medium", timeStyle: "long" });
  const UNITS = [
    ["year", 365 * 24 * 3600],
    ["month", 30 * 24 * 3600],
    ["week", 7 * 24 * 3600],
    ["day", 24 * 3600],
    ["hour", 3600],
    ["minute", 60],
  ];

  function relativeText(date) {
    const seconds = Math.round((date.getTime() - Date.now()) / 1000);
    if (Math.abs(seconds) < 45) return seconds <= 0 ? "just now" : "in a few seconds";
    for (const [unit, size] of UNITS) {
      if (Math.abs(seconds) >= size) return relative.format(Math.round(seconds / size), unit);
    }
    return relative.format(Math.round(seconds / 60), "minute");
  }

  /** A `<time>` showing `iso` relatively ("2 minutes ago"), the exact time on hover. */
  function timeNode(iso, never) {
    if (!iso) return document.createTextNode(never);
    const date = new Date(iso);
    const node = el("time", { datetime: iso, title: `${exact.format(date)} (${iso})` });
    node.textContent = relativeText(date);
    return node;
  }

  function refreshTimes() {
    for (const node of document.querySelectorAll("time[datetime]")) {
      node.textContent = relativeText(new Date(node.getAttribute("datetime")));
    }
  }

  // --- Limits (optional fields of a key) ----------------------------------------------------

  const PERIODS = new Map([
    [1, "second"],
    [60, "minute"],
    [3600, "hour"],
    [86400, "day"],
    [604800, "week"],
  ]);

  function per(seconds) {
    if (PERIODS.has(seconds)) return PERIODS.get(seconds);
    if (seconds % 86400 === 0) return `${seconds / 86400} days`;
    if (seconds % 3600 === 0) return `${seconds / 3600} hours`;
    if (seconds % 60 === 0) return `${seconds / 60} minutes`;
    return `${seconds} seconds`;
  }

  const count = new Intl.NumberFormat("en");

  function rateLimitText(limit) {
    if (!limit || typeof limit.limit !== "number") return null;
    return `${count.format(limit.limit)} requests per ${per(limit.period_secs)}`;
  }

  function creditsText(credits) {
    if (!credits || typeof credits.remaining !== "number") return null;
    let text = `${count.format(credits.remaining)} remaining`;
    if (credits.refill && typeof credits.refill.amount === "number") {
      const every = credits.refill.every_secs;
      text += `; refills ${count.format(credits.refill.amount)} every ${per(every)}`;
    }
    return text;
  }

  // --- Session ------------------------------------------------------------------------------

  /** The scopes a token carries (its `scope` claim), read for display only: never trusted. */
  function tokenScopes(token) {
    try {
      const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "=")));
      return typeof claims.scope === "string" ? claims.scope.split(" ").filter(Boolean) : [];
    } catch {
      return [];
    }
  }

  function showSignIn(reason) {
    $("signin").hidden = false;
    const why = $("signin-reason");
    why.textContent = reason || "";
    why.hidden = !reason;
    $("logout").hidden = true;
    $("whoami").textContent = "";
    const workspace = $("workspace");
    // What the page showed stays visible, out of reach until the next sign-in.
    workspace.inert = true;
    workspace.classList.add("stale");
    const email = $("login-email");
    (email.value ? $("login-password") : email).focus();
  }

  /** A 401 from the API on a signed-in call: the token expired or was refused. */
  function sessionExpired() {
    if (!session) return;
    const email = session.email;
    session = null;
    clearError();
    $("login-email").value = email;
    showSignIn(
      "Your session has expired. Sign in again to continue; nothing on this page was lost.",
    );
  }

  async function signIn(event) {
    event.preventDefault();
    clearError();
    if (Date.now() < waitUntil) {
      showWait();
      return;
    }
    const email = $("login-email").value.trim();
    const password = $("login-password").value;
    if (!email || !password) {
      showError("Enter your email and password.");
      (email ? $("login-password") : $("login-email")).focus();
      return;
    }
    const button = $("login-submit");
    button.disabled = true;
    try {
      const answer = await call("POST", "/auth/login", {
        body: { email, password },
        auth: false,
      });
      $("login-password").value = "";
      const previous = $("workspace").dataset.email;
      session = { token: answer.access_token, email, scopes: tokenScopes(answer.access_token) };
      if (previous && previous !== email) forgetPage();
      enterWorkspace();
    } catch (error) {
      if (error instanceof ApiError && error.status === 429) {
        startWait(error.retryAfter || 60);
      } else if (error instanceof ApiError && error.status === 401) {
        showError(error.message);
        $("login-password").select();
      } else {
        report(error);
      }
    } finally {
      button.disabled = Date.now() < waitUntil;
    }
  }

  function waitText(seconds) {
    if (seconds < 90) return `${seconds} second${seconds === 1 ? "" : "s"}`;
    const minutes = Math.ceil(seconds / 60);
    return `${minutes} minutes`;
  }

  function showWait() {
    const left = Math.max(0, Math.ceil((waitUntil - Date.now()) / 1000));
    if (left === 0) {
      clearInterval(waitTimer);
      waitUntil = 0;
      $("login-submit").disabled = false;
      clearError();
      return;
    }
    showError(
      `Too many sign-in attempts. For your account's safety, please wait ${waitText(left)} before trying again.`,
    );
  }

  function startWait(seconds) {
    waitUntil = Date.now() + seconds * 1000;
    $("login-submit").disabled = true;
    clearInterval(waitTimer);
    showWait();
    waitTimer = setInterval(showWait, 1000);
  }

  function enterWorkspace() {
    $("signin").hidden = true;
    $("signin-reason").hidden = true;
    const workspace = $("workspace");
    workspace.hidden = false;
    workspace.inert = false;
    workspace.classList.remove("stale");
    workspace.dataset.email = session.email;
    $("whoami").textContent = session.email;
    $("logout").hidden = false;
    // The earliest expiry the form offers: tomorrow, in local time.
    const tomorrow = new Date(Date.now() + 24 * 3600 * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    $("key-expires").min =
      `${tomorrow.getFullYear()}-${pad(tomorrow.getMonth() + 1)}-${pad(tomorrow.getDate())}`;
    renderScopes();
    refresh().then(() => $("key-name").focus());
  }

  /** Removes everything the page shows of an account. */
  function forgetPage() {
    hideNewKey();
    keys = [];
    known.clear();
    $("key-list").replaceChildren();
    $("audit-list").replaceChildren();
    $("keys-empty").hidden = true;
    $("audit-empty").hidden = true;
    $("audit-unavailable").hidden = true;
    $("create-form").reset();
    delete $("workspace").dataset.email;
  }

  function signOut() {
    session = null;
    clearError();
    forgetPage();
    $("workspace").hidden = true;
    $("login-email").value = "";
    $("login-password").value = "";
    showSignIn("You have signed out.");
  }

  // --- Loading ------------------------------------------------------------------------------

  async function refresh() {
    clearError();
    try {
      await Promise.all([loadKeys(), loadAudit()]);
    } catch (error) {
      report(error);
    }
  }

  async function loadKeys() {
    const listed = await call("GET", "/users/me/api-keys");
    keys = Array.isArray(listed) ? listed : [];
    keys.forEach(remember);
    renderKeys();
  }

  async function loadAudit() {
    const list = $("audit-list");
    const unavailable = $("audit-unavailable");
    try {
      const page = await call("GET", `/users/me/audit-events?limit=${AUDIT_PAGE}`);
      unavailable.hidden = true;
      renderAudit(page && Array.isArray(page.events) ? page.events : []);
    } catch (error) {
      if (error instanceof ApiError && error.status === 403) {
        list.replaceChildren();
        $("audit-empty").hidden = true;
        unavailable.textContent = `Your account cannot read its activity (${error.message}).`;
        unavailable.hidden = false;
        return;
      }
      throw error;
    }
  }

  // --- Rendering ----------------------------------------------------------------------------

  /** The scope checkboxes, one per scope the session holds; choices already made are kept. */
  function renderScopes() {
    const box = $("scope-options");
    const before = new Map(
      [...box.querySelectorAll("input[type=checkbox]")].map((b) => [b.value, b.checked]),
    );
    box.replaceChildren();
    const scopes = session ? session.scopes : [];
    $("scopes-hint").textContent = scopes.length
      ? "What the key may do. You can give only scopes you hold."
      : "The key gets all of your scopes.";
    for (const scope of scopes) {
      const id = `scope-${scope.replace(/[^a-z0-9]/gi, "-")}`;
      const checked = before.has(scope) ? before.get(scope) : true;
      const input = el("input", { type: "checkbox", id, name: "scopes", value: scope, checked });
      box.append(el("label", { class: "check", for: id }, input, ` ${scope}`));
    }
  }

  /** Every key this page has listed, created or rotated (id → {name, display}), so the
   *  activity can still name a key after it is revoked. */
  const known = new Map();

  function remember(key) {
    if (key && key.id) known.set(key.id, { name: key.name, display: key.display });
  }

  /** A key by name and display fragment, or by the start of its id if never seen. */
  function keyLabel(id) {
    const key = known.get(id);
    return key ? `“${key.name}” (${key.display})` : `${String(id).slice(0, 8)}…`;
  }

  function createdByText(createdBy) {
    if (createdBy && createdBy.kind === "key" && createdBy.key_id) {
      return `Key ${keyLabel(createdBy.key_id)}`;
    }
    return "You (signed in) or an administrator";
  }

  /** The keys a key created, transitively, among those listed. */
  function descendants(id) {
    const found = [];
    const queue = [id];
    while (queue.length) {
      const parent = queue.shift();
      for (const key of keys) {
        if (key.created_by && key.created_by.key_id === parent && !found.includes(key)) {
          found.push(key);
          queue.push(key.id);
        }
      }
    }
    return found;
  }

  function fact(term, value) {
    return [el("dt", { text: term }), el("dd", {}, value)];
  }

  function renderKeys() {
    const list = $("key-list");
    list.replaceChildren();
    $("keys-empty").hidden = keys.length > 0;
    for (const key of keys) {
      const facts = el("dl", { class: "facts" });
      const scopes = key.scopes && key.scopes.length ? key.scopes.join(", ") : "none";
      facts.append(
        ...fact("Scopes", scopes),
        ...fact("Created", timeNode(key.created_at, "unknown")),
        ...fact("Last used", timeNode(key.last_used_at, "never")),
        ...fact("Expires", timeNode(key.expires_at, "never")),
        ...fact("Created by", createdByText(key.created_by)),
      );
      const rate = rateLimitText(key.rate_limit);
      if (rate) facts.append(...fact("Rate limit", rate));
      const credits = creditsText(key.credits);
      if (credits) facts.append(...fact("Credits", credits));
      const children = descendants(key.id).length;
      if (children) facts.append(...fact("Keys it created", String(children)));

      const rotate = el("button", {
        type: "button",
        "data-testid": "key-rotate",
        "aria-label": `Rotate ${key.name}`,
        text: "Rotate…",
      });
      rotate.addEventListener("click", () => askRotate(key));
      const revoke = el("button", {
        type: "button",
        class: "danger",
        "data-testid": "key-revoke",
        "aria-label": `Revoke ${key.name}`,
        text: "Revoke…",
      });
      revoke.addEventListener("click", () => askRevoke(key));

      list.append(
        el(
          "li",
          { class: "key", "data-testid": "key-row", "data-key-id": key.id },
          el(
            "div",
            { class: "key-head" },
            el("h3", { text: key.name }),
            el("code", { class: "display", text: key.display }),
          ),
          facts,
          el("div", { class: "actions" }, rotate, revoke),
        ),
      );
    }
  }

  const ACTIONS = {
    key_created: "Key created",
    key_rotated: "Key rotated",
    key_revoked: "Key revoked",
    key_revoked_by_cascade: "Key revoked with the key that created it",
    key_revoked_by_possession: "Key revoked by someone holding it",
    key_revoked_by_secret_scanning: "Key revoked: found leaked by secret scanning",
    key_leak_reported: "Key reported leaked",
    key_limits_changed: "Key limits changed",
    login_succeeded: "Signed in",
    login_failed: "Sign-in failed",
    login_throttled: "Sign-in locked after repeated failures",
    user_disabled: "Account disabled",
    user_enabled: "Account enabled",
    user_deleted: "Account deleted",
    user_scopes_changed: "Account scopes changed",
    token_derived: "Short-lived token derived from a key",
    ticket_issued: "WebSocket ticket issued",
  };

  function actorText(actor) {
    if (!actor) return "unknown";
    switch (actor.kind) {
      case "user":
        return "you (signed in)";
      case "key":
        return `key ${keyLabel(actor.key_id)}`;
      case "system":
        return `the system (${actor.name})`;
      case "anonymous":
        return "someone not signed in";
      default:
        return actor.kind || "unknown";
    }
  }

  function renderAudit(events) {
    const list = $("audit-list");
    list.replaceChildren();
    $("audit-empty").hidden = events.length > 0;
    for (const event of events) {
      const what = ACTIONS[event.action] || event.action;
      const parts = [`by ${actorText(event.actor)}`];
      if (event.target && /^[0-9a-f-]{36}$/i.test(event.target) && event.action.startsWith("key_")) {
        parts.push(`on key ${keyLabel(event.target)}`);
      }
      if (event.client) parts.push(`from ${event.client}`);
      const failed = event.outcome && event.outcome !== "success";
      list.append(
        el(
          "li",
          { class: failed ? "event failed" : "event", "data-testid": "audit-row", "data-action": event.action },
          el("span", { class: "what", text: what }),
          el("span", { class: "who", text: parts.join(" · ") }),
          el("span", { class: "when" }, timeNode(event.at, "")),
        ),
      );
    }
  }

  // --- The new key, shown once ---------------------------------------------------------------

  function showNewKey(created, how) {
    remember(created);
    const panel = $("new-key");
    $("new-key-title").textContent =
      how === "rotated" ? "Copy the rotated key now" : "Copy your new key now";
    $("new-key-about").textContent =
      how === "rotated"
        ? `“${created.name}” has a new value. The old value stopped working.`
        : `“${created.name}” was created.`;
    $("new-key-value").textContent = created.key;
    $("copy-status").textContent = "";
    panel.hidden = false;
    panel.focus();
  }

  function hideNewKey() {
    $("new-key-value").textContent = "";
    $("copy-status").textContent = "";
    $("new-key").hidden = true;
  }

  async function copyKey() {
    const value = $("new-key-value").textContent;
    if (!value) return;
    try {
      await navigator.clipboard.writeText(value);
      $("copy-status").textContent = "Copied to the clipboard.";
    } catch {
      // No clipboard access (an insecure origin or a denied permission): select the key so
      // Ctrl+C (⌘C) copies it.
      const range = document.createRange();
      range.selectNodeContents($("new-key-value"));
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      $("copy-status").textContent = "Selected: press Ctrl+C (⌘C) to copy.";
    }
  }

  // --- Create, rotate, revoke ----------------------------------------------------------------

  function positiveInteger(input, what, min) {
    const raw = input.value.trim();
    if (raw === "") return null;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min) {
      input.focus();
      throw new Error(`${what} must be a whole number of at least ${min}.`);
    }
    return value;
  }

  /** The create request from the form; limits only when filled in. */
  function createRequest() {
    const name = $("key-name").value.trim();
    if (!name) {
      $("key-name").focus();
      throw new Error("Give the key a name.");
    }
    const body = { name };
    const boxes = [...document.querySelectorAll("#scope-options input[type=checkbox]")];
    if (boxes.length) {
      const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
      if (!chosen.length) {
        boxes[0].focus();
        throw new Error("Choose at least one scope.");
      }
      body.scopes = chosen;
    }
    const expires = $("key-expires").value;
    if (expires) {
      const [year, month, day] = expires.split("-").map(Number);
      const at = new Date(year, month - 1, day);
      if (!(at.getTime() > Date.now())) {
        $("key-expires").focus();
        throw new Error("The expiry date must be in the future.");
      }
      body.expires_at = at.toISOString();
    }
    const requests = positiveInteger($("limit-requests"), "The rate limit", 1);
    if (requests !== null) {
      body.rate_limit = { limit: requests, period_secs: Number($("limit-period").value) };
    }
    const credits = positiveInteger($("credits-remaining"), "Credits", 0);
    const refill = positiveInteger($("credits-refill"), "The refill amount", 1);
    if (refill !== null && credits === null) {
      $("credits-remaining").focus();
      throw new Error("Set the credits a refill tops up.");
    }
    if (credits !== null) {
      body.credits = { remaining: credits };
      if (refill !== null) {
        body.credits.refill = { amount: refill, every_secs: Number($("credits-every").value) };
      }
    }
    return body;
  }

  async function createKey(event) {
    event.preventDefault();
    clearError();
    let body;
    try {
      body = createRequest();
    } catch (error) {
      showError(error.message);
      return;
    }
    const button = $("key-create");
    button.disabled = true;
    try {
      const created = await call("POST", "/users/me/api-keys", { body });
      $("create-form").reset();
      $("scope-options").replaceChildren();
      renderScopes();
      showNewKey(created, "created");
      await refresh();
    } catch (error) {
      report(error);
    } finally {
      button.disabled = false;
    }
  }

  function ask({ title, text, action, danger, cascade, grace = false, run }) {
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    const confirm = $("confirm");
    confirm.textContent = action;
    confirm.classList.toggle("danger", danger);
    $("grace-option").hidden = !grace;
    $("rotate-grace").value = "0";
    const option = $("cascade-option");
    option.hidden = !cascade;
    $("cascade").checked = false;
    if (cascade) $("cascade-text").textContent = cascade;
    pending = run;
    $("confirm-dialog").showModal();
    $("confirm-cancel").focus();
  }

  function askRotate(key) {
    ask({
      title: `Rotate “${key.name}”?`,
      text: `The key ${key.display} gets a new value, shown once. Update every program that uses it before the current value stops working.`,
      action: `Rotate “${key.name}”`,
      danger: false,
      cascade: null,
      grace: true,
      run: async () => {
        const grace = Number($("rotate-grace").value);
        const rotated = await call("POST", `/users/me/api-keys/${encodeURIComponent(key.id)}/rotate`, {
          body: grace > 0 ? { grace_secs: grace } : undefined,
        });
        showNewKey(rotated, "rotated");
        await refresh();
      },
    });
  }

  function askRevoke(key) {
    const children = descendants(key.id).length;
    ask({
      title: `Revoke “${key.name}”?`,
      text: `The key ${key.display} stops working immediately and for good. This cannot be undone.`,
      action: `Revoke “${key.name}”`,
      danger: true,
      cascade: children
        ? `Also revoke the ${children} key${children === 1 ? "" : "s"} it created (and any they created)`
        : "Also revoke every key it created (and any they created)",
      run: async () => {
        const cascade = $("cascade").checked ? "?cascade=true" : "";
        await call("DELETE", `/users/me/api-keys/${encodeURIComponent(key.id)}${cascade}`);
        await refresh();
      },
    });
  }

  async function confirmPending() {
    const run = pending;
    pending = null;
    $("confirm-dialog").close();
    clearError();
    if (!run) return;
    try {
      await run();
    } catch (error) {
      report(error);
    }
  }

  // --- Wiring -------------------------------------------------------------------------------

  function start() {
    $("signin-form").addEventListener("submit", signIn);
    $("create-form").addEventListener("submit", createKey);
    $("logout").addEventListener("click", signOut);
    $("refresh").addEventListener("click", refresh);
    $("new-key-copy").addEventListener("click", copyKey);
    $("new-key-dismiss").addEventListener("click", () => {
      hideNewKey();
      $("key-name").focus();
    });
    $("confirm").addEventListener("click", confirmPending);
    $("confirm-cancel").addEventListener("click", () => $("confirm-dialog").close());
    $("confirm-dialog").addEventListener("close", () => {
      pending = null;
    });
    // A page put away (another tab, the back button) keeps no key on screen.
    window.addEventListener("pagehide", hideNewKey);
    setInterval(refreshTimes, 30 * 1000);
    showSignIn(null);
  }

  start();
})();
