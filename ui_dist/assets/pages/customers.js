// Customers: the top of the chain (customer > team > virtual key); a customer's budget caps the spend
// of all its teams' and its own keys together (GET/POST/PUT/DELETE /api/governance/customers).

import {entityPage} from "../entities.js";
import {h} from "../util.js";

const page = entityPage({
  route: "customers", list: "customers", noun: "customer", title: "Customers", keyField: "customer_id",
  placeholder: "e.g. Acme",
  intro: "A customer's budget and rate limit apply to every team and virtual key under it.",
  emptyHint: "Create a customer, then attach teams or virtual keys to it.",
  extraColumn: {label: "Teams", cell: (c, gov) => {
    const teams = c.teams || (gov.teams || []).filter((t) => t.customer_id === c.id);
    return teams.length ? teams.map((t) => t.name || t.id).join(", ") : h("span", {class: "hint"}, "–");
  }},
});

export const {mount, unmount} = page;
