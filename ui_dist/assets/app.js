// The shell: hash routing between the pages, the theme switch and the live-feed indicator.

import {live} from "./api.js";
import * as cache from "./pages/cache.js";
import * as customers from "./pages/customers.js";
import * as dashboard from "./pages/dashboard.js";
import * as guardrails from "./pages/guardrails.js";
import * as keys from "./pages/keys.js";
import * as logs from "./pages/logs.js";
import * as providers from "./pages/providers.js";
import * as settings from "./pages/settings.js";
import * as teams from "./pages/teams.js";
import {h} from "./util.js";

const PAGES = {dashboard, logs, providers, "virtual-keys": keys, teams, customers, cache, guardrails, settings};
const TITLES = {"virtual-keys": "Virtual Keys"};
let current = null;

function route() {
  const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
  const name = path.split("/")[0] || "dashboard";
  const params = Object.fromEntries(new URLSearchParams(search || ""));
  const page = PAGES[name] || dashboard;
  if (current && current.unmount) current.unmount();
  current = page;
  for (const a of document.querySelectorAll(".nav nav a")) a.classList.toggle("active", a.dataset.page === (PAGES[name] ? name : "dashboard"));
  const main = document.getElementById("page");
  main.replaceChildren();
  const shown = PAGES[name] ? name : "dashboard";
  document.title = `Bifrost · ${TITLES[shown] || shown[0].toUpperCase() + shown.slice(1)}`;
  Promise.resolve(page.mount(main, params)).catch((err) => {
    main.replaceChildren(h("div", {class: "error-box"}, `Could not load this page: ${err.message}`));
  });
}

function setupTheme() {
  const button = document.getElementById("theme-toggle");
  const effective = () => document.documentElement.dataset.theme
    || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  const label = () => { button.textContent = effective() === "dark" ? "☀ Light" : "☾ Dark"; };
  button.addEventListener("click", () => {
    const next = effective() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("bifrost-theme", next);
    label();
    window.dispatchEvent(new Event("themechange"));
  });
  label();
}

setupTheme();
live.ensure();
window.addEventListener("hashchange", route);
route();
