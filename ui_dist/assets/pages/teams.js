// Teams: a team owns virtual keys and may belong to a customer; its budget caps the spend of all its
// keys together (GET/POST/PUT/DELETE /api/governance/teams).

import {customerInput, entityPage, nameOf} from "../entities.js";
import {h} from "../util.js";

const page = entityPage({
  route: "teams", list: "teams", noun: "team", title: "Teams", keyField: "team_id", placeholder: "e.g. search",
  intro: "A team's budget and rate limit apply to all of its virtual keys together, on top of each key's own.",
  emptyHint: "Create a team, then give virtual keys to it from the Virtual Keys page.",
  extraColumn: {label: "Customer", cell: (t, gov) => (t.customer_id
    ? (t.customer && t.customer.name) || nameOf(gov.customerById, t.customer_id) : h("span", {class: "hint"}, "–"))},
  extraInput: customerInput,
});

export const {mount, unmount} = page;
