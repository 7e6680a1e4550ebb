// One page for a governed owner entity (teams, customers): list with their budget and rate-limit usage,
// create (with an optional budget), edit the budget, delete after an inline confirmation. The shapes are
// Go Bifrost's: `GET /api/governance/teams` -> {"teams": [...]}, each with its `budget` / `rate_limit`
// embedded (current usage and `reset_at`); create and update take Go's inline `budget` object, which
// the gateway stores as a budget entry linked by `budget_id`.

import {del, post, put} from "./api.js";
import {GOV, confirmButton, limitBars, loadGovernance, nameOf, options, showFormError, unavailable} from "./gov.js";
import {clear, h, toast} from "./util.js";

export const PERIODS = [["1h", "hour"], ["1d", "day"], ["1w", "week"], ["1M", "month"]];

/**
 * kind: {route: "teams", list: "teams", one: "team", title: "Teams", noun: "team",
 *        keyField: "team_id", extraColumn: {label, cell(entity, gov)}, extraInput(gov) -> {el, read(body)}}
 */
export function entityPage(kind) {
  const base = `${GOV}/${kind.route}`;
  return {
    unmount() {},
    async mount(root) {
      const editorSlot = h("div");
      const listSlot = h("div");
      let gov = null;
      const refresh = async () => {
        gov = await loadGovernance();
        const items = gov[kind.list];
        createButton.disabled = items === null;
        clear(listSlot, items === null ? unavailable(kind.title, base) : list(kind, base, items, gov, refresh));
      };
      const createButton = h("button", {type: "button", class: "primary", "data-testid": `create-${kind.noun}`, onclick: () => {
        clear(editorSlot, createForm(kind, base, gov, {done: async () => { clear(editorSlot); await refresh(); }, cancel: () => clear(editorSlot)}));
        editorSlot.querySelector("input").focus();
      }}, `Create ${kind.noun}`);
      root.append(h("div", {class: "page-head"}, h("h1", {}, kind.title), createButton),
        h("p", {class: "hint", style: "margin-top:-.5rem"}, kind.intro), editorSlot, listSlot);
      await refresh();
    },
  };
}

function budgetInputs(existing) {
  const max = h("input", {type: "number", min: 0, step: "any", "data-field": "budget", placeholder: "no budget",
    value: existing && existing.max_limit !== undefined ? existing.max_limit : null, "aria-label": "Budget in dollars"});
  const period = h("select", {"data-field": "reset_duration", "aria-label": "Budget resets every"},
    PERIODS.map(([v, t]) => h("option", {value: v}, `per ${t}`)));
  const current = existing && existing.reset_duration;
  if (current && !PERIODS.some(([v]) => v === current)) period.append(h("option", {value: current}, `per ${current}`));
  period.value = current || "1M";
  return {max, period, read: () => (max.value === "" ? null : {max_limit: Number(max.value), reset_duration: period.value})};
}

function createForm(kind, base, gov, {done, cancel}) {
  const errorBox = h("div");
  const name = h("input", {"data-field": "name", required: true, autocomplete: "off", placeholder: kind.placeholder});
  const budget = budgetInputs(null);
  const extra = kind.extraInput ? kind.extraInput(gov) : null;
  const save = h("button", {type: "submit", class: "primary", "data-testid": `save-${kind.noun}`}, `Create ${kind.noun}`);
  const form = h("form", {class: "panel", "data-testid": `${kind.noun}-editor`, style: "margin-bottom:1rem", onsubmit: async (event) => {
    event.preventDefault();
    clear(errorBox);
    const body = {name: name.value.trim()};
    if (extra) extra.read(body);
    const b = budget.read();
    if (b) body.budget = b;
    save.disabled = true;
    try {
      const created = await post(base, body);
      toast(created && created.restart_required
        ? `Created ${kind.noun} ${body.name}; its limits apply after a restart (this gateway started without governance)`
        : `Created ${kind.noun} ${body.name}`);
      await done();
    } catch (err) {
      showFormError(form, errorBox, err);
    } finally {
      save.disabled = false;
    }
  }},
  h("h2", {}, `Create a ${kind.noun}`),
  h("div", {class: "entity-form"},
    h("label", {class: "field"}, h("span", {}, "Name"), name),
    extra ? extra.el : null,
    h("label", {class: "field"}, h("span", {}, "Budget ($, optional)"), budget.max),
    h("label", {class: "field"}, h("span", {}, "Resets"), budget.period)),
  errorBox,
  h("div", {class: "card-actions"}, save, h("button", {type: "button", onclick: cancel}, "Cancel")));
  return form;
}

function budgetEditor(kind, base, entity, {done, cancel}) {
  const errorBox = h("div");
  const budget = budgetInputs(entity.budget || null);
  const save = h("button", {type: "submit", class: "primary", "data-testid": "save-budget"}, "Save budget");
  const form = h("form", {class: "budget-editor", "data-testid": "budget-editor", onsubmit: async (event) => {
    event.preventDefault();
    clear(errorBox);
    const b = budget.read();
    save.disabled = true;
    try {
      // An empty amount unlinks the budget (Go's "null to clear"); the budget entry itself stays.
      await put(`${base}/${encodeURIComponent(entity.id)}`, b ? {budget: b} : {budget_id: null});
      toast(`Saved the budget of ${entity.name || entity.id}`);
      await done();
    } catch (err) {
      showFormError(form, errorBox, err);
    } finally {
      save.disabled = false;
    }
  }},
  h("div", {class: "toolbar"}, budget.max, budget.period, save, h("button", {type: "button", onclick: cancel}, "Cancel")),
  h("div", {class: "hint"}, "Empty amount: no budget."), errorBox);
  return form;
}

function list(kind, base, items, gov, refresh) {
  if (!items.length) {
    return h("div", {class: "panel empty", "data-testid": `empty-${kind.route}`},
      h("h2", {}, `No ${kind.route} yet`), h("p", {}, kind.emptyHint));
  }
  const keys = gov.keys || [];
  const rows = items.map((e) => {
    const keyCount = keys.filter((k) => k[kind.keyField] === e.id).length;
    const slot = h("div");
    const limits = h("td", {style: "min-width:15rem"}, limitBars(e, gov), slot);
    return h("tr", {"data-entity": e.id},
      h("td", {}, h("strong", {}, e.name || e.id), h("div", {class: "hint mono"}, e.id)),
      kind.extraColumn ? h("td", {}, kind.extraColumn.cell(e, gov)) : null,
      h("td", {class: "num"}, h("a", {href: `#/virtual-keys`}, String(keyCount))),
      limits,
      h("td", {}, h("div", {class: "row-actions"},
        h("button", {type: "button", "data-testid": "edit-budget", onclick: () => {
          clear(slot, budgetEditor(kind, base, e, {done: refresh, cancel: () => clear(slot)}));
          slot.querySelector("input").focus();
        }}, e.budget || e.budget_id ? "Edit budget" : "Set budget"),
        confirmButton("Delete", `Delete ${kind.noun} ${e.name || e.id}?`, async () => {
          try {
            await del(`${base}/${encodeURIComponent(e.id)}`);
            toast(`Deleted ${e.name || e.id}`);
            await refresh();
          } catch (err) { toast(err.message, true); }
        }, `delete-${kind.noun}`))));
  });
  const head = ["Name", kind.extraColumn ? kind.extraColumn.label : null, "Virtual keys", "Budget and limits", ""].filter((t) => t !== null);
  return h("div", {class: "panel"}, h("div", {class: "table-wrap"}, h("table", {class: "data static", "data-testid": `${kind.route}-table`},
    h("thead", {}, h("tr", {}, head.map((t) => h("th", {class: t === "Virtual keys" ? "num" : ""}, t)))),
    h("tbody", {}, rows))));
}

/** A customer <select> for the team form (`customer_id`), from the customers list when there is one. */
export function customerInput(gov) {
  const pairs = (gov.customers || []).map((c) => [c.id, c.name && c.name !== c.id ? `${c.name} (${c.id})` : c.id]);
  const select = h("select", {"data-field": "customer_id", "aria-label": "Customer"}, options("No customer", pairs));
  return {el: h("label", {class: "field"}, h("span", {}, "Customer"), select),
    read: (body) => { if (select.value) body.customer_id = select.value; }};
}

export {nameOf};
