// Stripe's official Node library (stripe-node) signing webhook deliveries to a running
// `tenure serve` (scripts/check-clients.sh): signed events are stored once per event id,
// a wrong secret and a stale timestamp are refused, a payment failure raises an alert.
//   node scripts/stripe_webhook.mjs BASE_URL SIGNING_SECRET API_KEY
import { createRequire } from "node:module";
const require = createRequire(process.env.STRIPE_NODE_MODULES + "/");
const Stripe = require("stripe");
const stripe = new Stripe("sk_test_unused");
const [base, secret, key] = process.argv.slice(2);
const now = Math.floor(Date.now() / 1000);
let failures = 0;
const check = (ok, what) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
};

async function deliver(event, { withSecret = secret, timestamp = now } = {}) {
  const payload = JSON.stringify(event);
  const header = stripe.webhooks.generateTestHeaderString({ payload, secret: withSecret, timestamp });
  const r = await fetch(`${base}/webhooks/stripe`, {
    method: "POST",
    headers: { "content-type": "application/json", "stripe-signature": header },
    body: payload,
  });
  return [r.status, await r.json()];
}

const cus = "cus_checkclients";
const event = (id, type, object, created = now - 60) => ({ id, object: "event", type, created, data: { object } });
const sub = {
  id: "sub_cc", object: "subscription", customer: cus, created: now - 86400, status: "active", currency: "usd",
  items: { object: "list", data: [{ id: "si_cc", object: "subscription_item", quantity: 3,
    current_period_start: now - 86400, current_period_end: now + 29 * 86400,
    price: { id: "price_cc", object: "price", product: "prod_cc", unit_amount: 2000, currency: "usd",
      recurring: { interval: "month", interval_count: 1 } } }] },
};
const invoice = {
  id: "in_cc", object: "invoice", customer: cus, created: now - 30, status: "open", currency: "usd",
  attempt_count: 1, total: 6000, total_excluding_tax: 6000,
  lines: { data: [{ id: "il_cc", amount: 6000, period: { start: now - 86400, end: now + 29 * 86400 } }] },
};

let [st, j] = await deliver(event("evt_cc_1", "customer.created", { id: cus, object: "customer", created: now - 86400, name: "Check Clients", metadata: { tier: "gold" } }, now - 120));
check(st === 200 && j.accepted === 1, `customer.created: ${st} ${JSON.stringify(j)}`);
[st, j] = await deliver(event("evt_cc_2", "customer.subscription.created", sub, now - 90));
check(st === 200 && j.accepted === 1, `customer.subscription.created: ${st} ${JSON.stringify(j)}`);
[st, j] = await deliver(event("evt_cc_2", "customer.subscription.created", sub, now - 90));
check(st === 200 && j.accepted === 0 && j.duplicates === 1, `a retried delivery is stored once: ${st} ${JSON.stringify(j)}`);
[st, j] = await deliver(event("evt_cc_3", "invoice.payment_failed", invoice, now - 30));
check(st === 200 && j.accepted === 1, `invoice.payment_failed: ${st} ${JSON.stringify(j)}`);
[st, j] = await deliver(event("evt_cc_4", "customer.updated", { id: cus, object: "customer", created: now - 86400, metadata: {} }), { withSecret: "whsec_wrong" });
check(st === 400 && j.error?.code === "invalid_signature", `a wrong secret is refused: ${st} ${JSON.stringify(j)}`);
[st, j] = await deliver(event("evt_cc_5", "customer.updated", { id: cus, object: "customer", created: now - 86400, metadata: {} }), { timestamp: now - 600 });
check(st === 400 && j.error?.code === "invalid_signature", `a stale timestamp is refused: ${st} ${JSON.stringify(j)}`);

const auth = { headers: { authorization: `Bearer ${key}` } };
let account = null;
let alerts = [];
for (let i = 0; i < 100; i++) {
  account = await (await fetch(`${base}/api/v1/accounts/${cus}`, auth)).json();
  alerts = (account.alerts || []).map((a) => a.rule);
  if (alerts.includes("payment_failed")) break;
  await new Promise((r) => setTimeout(r, 100));
}
check(account && account.mrr === 60, `the account's MRR is 3 x 20.00: ${account && account.mrr}`);
check(alerts.includes("payment_failed"), `the payment failure raised its alert: ${JSON.stringify(alerts)}`);
process.exit(failures ? 1 : 0);
