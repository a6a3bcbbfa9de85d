// lambdaop web page: how values are written on the page (escaped text, times in the reader's zone,
// what a call reaches). Pure; imported by app.js and steps.js.

export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function localTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return `<time datetime="${esc(iso)}" title="${esc(d.toISOString())} (UTC)">${esc(d.toLocaleString())}</time>`;
}

export const ARN = /^arn:aws[a-z-]*:lambda:([a-z0-9-]+):\d{12}:function:(.+)$/;

export function host(url) {
  // a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]) shows as its name and region
  const arn = ARN.exec(url || "");
  if (arn) return `λ ${arn[2]} (${arn[1]})`;
  try { return new URL(url).host; } catch { return url || ""; }
}

export function target(invoke) {
  // what a call reaches: its URL, or its Lambda function (name or ARN, with the qualifier)
  if (!invoke || typeof invoke === "string") return invoke || "";
  if (invoke.lambda) return invoke.qualifier && !invoke.lambda.endsWith(`:${invoke.qualifier}`) ? `${invoke.lambda}:${invoke.qualifier}` : invoke.lambda;
  return invoke.url || "";
}

export function callWords(invoke) {
  // a step as it is told apart from the others: its method and path, or its Lambda function
  const url = target(invoke);
  const arn = ARN.exec(url);
  if (arn) return `λ ${arn[2]}`;
  if (invoke && typeof invoke === "object" && invoke.lambda) return `λ ${invoke.lambda}`;
  const method = (invoke && typeof invoke === "object" && invoke.method) || "GET";
  // a URL with ${{ EXPR }} in it is shown as written (parsing it would encode the expression's spaces)
  const path = url.includes("${{") ? /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*(.*)$/i.exec(url) : null;
  if (path) return `${method} ${path[1] || "/"}`;
  try { const u = new URL(url); return `${method} ${u.pathname}${u.search}`; } catch { return `${method} ${url}`; }
}
