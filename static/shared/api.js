// A small client of the hub's public API (/api/v1), shared by both pages.
// Tokens live in sessionStorage, so closing the tab logs out.

import { fieldProblems, messageFor } from "./errors.js";

export const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, body) {
    super(messageFor(body));
    this.status = status;
    this.body = body || {};
    this.code = this.body.code || "network_error";
    this.requestId = this.body.request_id || null;
    this.problems = this.code === "validation_failed" ? fieldProblems(this.body) : [];
  }
}

export class Session {
  constructor(storageKey) {
    this.storageKey = storageKey;
    const stored = sessionStorage.getItem(storageKey);
    this.tokens = stored ? JSON.parse(stored) : null;
    this.onLoggedOut = () => {};
  }

  get loggedIn() {
    return Boolean(this.tokens && this.tokens.access_token);
  }

  store(pair) {
    this.tokens = pair;
    sessionStorage.setItem(this.storageKey, JSON.stringify(pair));
  }

  clear() {
    this.tokens = null;
    sessionStorage.removeItem(this.storageKey);
  }

  // Send one request, renewing the token pair once if the access token expired.
  // A FormData body goes as multipart/form-data, anything else as JSON.
  async call(method, path, body, { raw = false, retry = true } = {}) {
    const headers = {};
    if (this.tokens) headers.Authorization = `Bearer ${this.tokens.access_token}`;
    const init = { method, headers };
    if (body instanceof FormData) {
      // The browser writes the Content-Type header with the part boundary.
      init.body = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch {
      throw new ApiError(0, null);
    }
    if (response.ok) {
      if (raw) return response;
      return response.status === 204 ? null : response.json();
    }
    const failure = await readError(response);
    if (response.status === 401 && retry && failure.code === "token_expired") {
      if (await this.refresh()) return this.call(method, path, body, { raw, retry: false });
    }
    // Other 401 codes, such as a wrong old password, leave the session alone.
    if (response.status === 401 && this.tokens && failure.code.startsWith("token_")) {
      this.clear();
      this.onLoggedOut(failure);
    }
    throw failure;
  }

  async refresh() {
    const refreshToken = this.tokens && this.tokens.refresh_token;
    if (!refreshToken) return false;
    const response = await fetch(`${API}/auth/refresh`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: refreshToken }),
    });
    if (!response.ok) return false;
    this.store(await response.json());
    return true;
  }

  // Log in through a public endpoint that returns a token pair.
  async login(path, body) {
    this.clear();
    const pair = await this.call("POST", path, body);
    this.store(pair);
    return pair;
  }

  async logout() {
    if (this.loggedIn) {
      try {
        await this.call("POST", "/auth/logout", undefined, { retry: false });
      } catch (error) {
        // The tokens are dropped here whatever the hub returns.
        console.warn("logout failed", error.code);
      }
    }
    this.clear();
  }
}

async function readError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = { code: `http_${response.status}`, message: `HTTP ${response.status}` };
  }
  return new ApiError(response.status, body);
}

// Build a query string from an object, leaving out empty values.
export function query(params) {
  const search = new URLSearchParams();
  Object.entries(params).forEach(([key, value]) => {
    if (value !== undefined && value !== null && value !== "") search.set(key, value);
  });
  const text = search.toString();
  return text ? `?${text}` : "";
}
