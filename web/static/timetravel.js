// What was firing at a moment: the time-travel API (GET /api/v2/alerts?at=) when this server has it, else an
// approximation from /history (the newest event of each alert received up to that moment, when it is firing).

import { getJSON } from "./api.js";

const LOOKBACK_MS = 7 * 86400e3;
const MAX_PAGES = 5;
let hasTimeTravel = null;

// The server's own description says whether /api/v2/alerts takes `at`.
async function timeTravel() {
  if (hasTimeTravel === null) {
    const doc = await getJSON("/openapi.json");
    const get = doc.paths && doc.paths["/api/v2/alerts"] && doc.paths["/api/v2/alerts"].get;
    hasTimeTravel = Boolean(get && (get.parameters || []).some((p) => p.name === "at"));
  }
  return hasTimeTravel;
}

export async function loadFiringAt(iso, filter) {
  if (await timeTravel()) {
    const alerts = await getJSON("/api/v2/alerts", { at: iso, filter });
    return { alerts, source: "from the time-travel API (/api/v2/alerts?at=)" };
  }
  const at = Date.parse(iso);
  const newest = new Map(); // fingerprint → its newest event received up to `at`
  let cursor;
  let pages = 0;
  let complete = false;
  const since = new Date(at - LOOKBACK_MS).toISOString();
  while (pages < MAX_PAGES) {
    const page = await getJSON("/history", { filter, since, until: iso, limit: 1000, cursor });
    pages += 1;
    for (const e of page.items) if (!newest.has(e.fingerprint)) newest.set(e.fingerprint, e);
    cursor = page.next;
    if (!cursor) {
      complete = true;
      break;
    }
  }
  const alerts = [...newest.values()].filter((e) => e.status === "firing" && Date.parse(e.startsAt) <= at);
  const reach = complete ? "7 days back" : `the newest ${pages * 1000} events of 7 days`;
  return {
    alerts,
    source: `approximated from /history (${reach}: each alert's newest event before then is firing); ` +
      "this server has no time-travel API",
  };
}
