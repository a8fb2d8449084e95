// masto.js 8 (the client library of Elk and Phanpy) on fedi, driven by
// tests/clients/test_masto_js.py.
//
// Input: FEDI_JOURNEY, JSON {url, username, password, groupHandle, privateGroupHandle,
// ownerAcct, redirectUri}.
// Output, one JSON object a line on stdout:
//   {"step": NAME, "ok": true, ...}   a step passed (and how long it took)
//   {"ask": WHAT, ...}                the driver must do something outside the client and
//                                     answer with one JSON line on stdin
//   {"step": NAME, "error": ...}      the step failed (then exit 1)
//   {"done": true}                    every step passed
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import {
  createOAuthAPIClient,
  createRestAPIClient,
  createStreamingAPIClient,
} from "masto";

const env = JSON.parse(process.env.FEDI_JOURNEY);
const SCOPES = "read write follow push";
const OOB = "urn:ietf:wg:oauth:2.0:oob";
const answers = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function say(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

async function ask(what, details = {}) {
  say({ ask: what, ...details });
  const { value, done } = await answers.next();
  if (done) throw new Error(`the driver gave no answer to ${what}`);
  return JSON.parse(value);
}

let current = "start";
// What a step returns is for the next steps (tokens among it): only its name and time are said.
async function step(name, run) {
  current = name;
  const started = Date.now();
  const result = (await run()) ?? {};
  say({ step: name, ok: true, seconds: (Date.now() - started) / 1000 });
  return result;
}

async function eventually(probe, what, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last;
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  throw new Error(`timed out waiting for ${what}; last value ${JSON.stringify(last)}`);
}

function marker(stem) {
  return stem + randomBytes(5).toString("hex");
}

function base64url(bytes) {
  return Buffer.from(bytes).toString("base64url");
}

function contentOf(status) {
  return (status.reblog ?? status).content ?? "";
}

function findIn(statuses, text) {
  const found = statuses.find((status) => contentOf(status).includes(text));
  return found ? (found.reblog ?? found) : undefined;
}

async function main() {
  const oauth = createOAuthAPIClient({ url: env.url });
  const anonymous = createRestAPIClient({ url: env.url });

  const app = await step("register an app (JSON, as Elk does)", async () => {
    const registered = await anonymous.v1.apps.create({
      clientName: "fedi client test (masto.js)",
      redirectUris: [env.redirectUri, OOB],
      scopes: SCOPES,
      website: "https://example.invalid/masto-js-test",
    });
    assert.ok(registered.clientId && registered.clientSecret, "no client id or secret");
    assert.equal(registered.name, "fedi client test (masto.js)");
    return { clientId: registered.clientId, clientSecret: registered.clientSecret };
  });

  await step("sign in with the password grant", async () => {
    // Elk registers its app again when the server answers invalid_client.
    const refused = await oauth.token.create({
      grantType: "password", clientId: app.clientId, clientSecret: "not the secret",
      redirectUri: OOB, username: env.username, password: env.password, scope: SCOPES,
    }).then(() => undefined, (error) => error);
    assert.equal(refused?.statusCode, 401, String(refused));
    assert.equal(refused.message, "invalid_client");
    const token = await oauth.token.create({
      grantType: "password",
      clientId: app.clientId,
      clientSecret: app.clientSecret,
      redirectUri: OOB,
      username: env.username,
      password: env.password,
      scope: SCOPES,
    });
    assert.equal(token.tokenType.toLowerCase(), "bearer");
    assert.deepEqual(token.scope.split(" ").sort(), SCOPES.split(" ").sort());
    const me = await createRestAPIClient({ url: env.url, accessToken: token.accessToken })
      .v1.accounts.verifyCredentials();
    assert.equal(me.username, env.username);
  });

  const { accessToken } = await step("sign in with the code flow and PKCE (S256)", async () => {
    // Phanpy uses PKCE only when the server's metadata lists S256.
    const metadata = await (await fetch(`${env.url}/.well-known/oauth-authorization-server`)).json();
    assert.ok(metadata.code_challenge_methods_supported?.includes("S256"),
      `metadata lists no S256: ${JSON.stringify(metadata)}`);
    const verifier = base64url(randomBytes(32));
    const challenge = base64url(createHash("sha256").update(verifier).digest());
    const state = base64url(randomBytes(12));
    const authorize = new URL(metadata.authorization_endpoint ?? `${env.url}/oauth/authorize`);
    authorize.search = new URLSearchParams({
      client_id: app.clientId,
      response_type: "code",
      redirect_uri: env.redirectUri,
      scope: SCOPES,
      state,
      code_challenge: challenge,
      code_challenge_method: "S256",
    }).toString();
    const { code, returnedState } = await ask("authorize", {
      url: authorize.toString(), redirectUri: env.redirectUri,
    });
    assert.equal(returnedState, state, "the redirect did not carry the state back");
    const token = await oauth.token.create({
      grantType: "authorization_code",
      clientId: app.clientId,
      clientSecret: app.clientSecret,
      redirectUri: env.redirectUri,
      code,
      codeVerifier: verifier,
      scope: SCOPES,
    });
    assert.deepEqual(token.scope.split(" ").sort(), SCOPES.split(" ").sort());
    return { accessToken: token.accessToken };
  });

  const masto = createRestAPIClient({ url: env.url, accessToken });

  await step("verify credentials and read preferences (Elk, right after login)", async () => {
    const me = await masto.v1.accounts.verifyCredentials();
    assert.equal(me.username, env.username);
    assert.equal(me.acct, env.username);
    assert.equal(typeof me.id, "string");
    assert.ok(me.avatar && me.header, "avatar and header must never be empty");
    const preferences = await masto.v1.preferences.fetch();
    assert.ok("posting:default:visibility" in preferences, JSON.stringify(preferences));
  });

  const { streaming } = await step("read the instance (v2, then v1)", async () => {
    const v2 = await masto.v2.instance.fetch();
    assert.equal(v2.domain, new URL(env.url).host);
    assert.match(v2.version, /^\d+\.\d+\.\d+/);
    assert.ok(v2.registrations && typeof v2.registrations.enabled === "boolean");
    assert.ok(v2.configuration.urls.streaming, "no configuration.urls.streaming");
    const v1 = await masto.v1.instance.fetch();
    assert.equal(v1.uri, new URL(env.url).host);
    return { streaming: v2.configuration.urls.streaming };
  });

  const { groupId } = await step("resolve the group on the other server", async () => {
    const found = await masto.v2.search.list({ q: env.groupHandle, resolve: true, type: "accounts" });
    assert.equal(found.accounts.length, 1, JSON.stringify(found));
    const [group] = found.accounts;
    assert.equal(group.group, true);
    assert.equal(group.acct, env.groupHandle.slice(1));
    return { groupId: group.id };
  });

  await step("join the group (follow), accepted by the other server", async () => {
    const relation = await masto.v1.accounts.$select(groupId).follow();
    assert.ok(relation.following || relation.requested, JSON.stringify(relation));
    await eventually(async () => {
      const [now] = await masto.v1.accounts.relationships.fetch({ id: [groupId] });
      return now.following;
    }, "the relationship to show following");
  });

  await step("ask to join a private group (locked), approved on the other server", async () => {
    const found = await masto.v2.search.list({
      q: env.privateGroupHandle, resolve: true, type: "accounts" });
    const [group] = found.accounts;
    assert.ok(group?.group && group.locked, JSON.stringify(found));
    const relation = await masto.v1.accounts.$select(group.id).follow();
    assert.equal(relation.requested, true, JSON.stringify(relation));
    assert.equal(relation.following, false, JSON.stringify(relation));
    const { text } = await ask("approve_and_post");
    await eventually(async () => {
      const [now] = await masto.v1.accounts.relationships.fetch({ id: [group.id] });
      return now.following && !now.requested;
    }, "the relationship to show following after the approval");
    // A members-only post: one of Mastodon's four visibilities, or Ice Cubes drops it.
    const post = await eventually(
      async () => findIn(await masto.v1.timelines.home.list({ limit: 20 }), text),
      "the private group's post in home");
    assert.equal(post.visibility, "private");
  });

  const { threadId } = await step("a thread from the other server in the home timeline", async () => {
    const { text, uri } = await ask("group_thread");
    const thread = await eventually(
      async () => findIn(await masto.v1.timelines.home.list({ limit: 20 }), text),
      "the group's thread in home");
    assert.equal(thread.uri, uri);
    assert.equal(thread.account.acct, env.ownerAcct);
    // Raw JSON here (masto.js only renames keys): ids must be strings.
    assert.equal(typeof thread.id, "string");
    assert.equal(typeof thread.account.id, "string");
    return { threadId: thread.id };
  });

  const { mineUri } = await step("post into the group by mentioning it", async () => {
    const text = marker("hello");
    const status = await masto.v1.statuses.create({
      status: `${env.groupHandle} Hello from masto.js ${text}`,
      visibility: "public",
    });
    assert.ok(status.content.includes(text));
    assert.ok(status.mentions.some((m) => m.acct === env.groupHandle.slice(1)),
      JSON.stringify(status.mentions));
    const { uri } = await ask("arrived_on_b", { text });
    assert.equal(uri, status.uri);
    return { mineUri: status.uri };
  });

  await step("reply in the thread and read its context", async () => {
    const text = marker("answer");
    const reply = await masto.v1.statuses.create({
      status: `@${env.ownerAcct} On the radiator ${text}`,
      inReplyToId: threadId,
    });
    assert.equal(reply.inReplyToId, threadId);
    const context = await masto.v1.statuses.$select(reply.id).context.fetch();
    assert.deepEqual(context.ancestors.map((s) => s.id), [threadId]);
    const { uri } = await ask("arrived_on_b", { text });
    assert.equal(uri, reply.uri);
  });

  await step("favourite the thread", async () => {
    const liked = await masto.v1.statuses.$select(threadId).favourite();
    assert.equal(liked.favourited, true);
    assert.ok(liked.favouritesCount >= 1);
    const again = await masto.v1.statuses.$select(threadId).fetch();
    assert.equal(again.favourited, true);
  });

  const { replyText } = await step("receive a reply over the streaming API", async () => {
    let opened;
    const open = new Promise((resolve, reject) => { opened = { resolve, reject }; });
    // The WebSocket masto.js opens, watched: the handshake's outcome is this step's first fact.
    class Watched extends WebSocket {
      constructor(...args) {
        super(...args);
        this.addEventListener("open", () => opened.resolve());
        this.addEventListener("error", (e) => opened.reject(
          new Error(`WebSocket to ${args[0]} failed: ${e.message ?? e.type}`)));
      }
    }
    const stream = createStreamingAPIClient({
      streamingApiUrl: streaming, accessToken, implementation: Watched, retry: 1,
    });
    const seen = [];
    const subscription = stream.user.subscribe();
    const reading = (async () => {
      for await (const event of subscription) seen.push(event);
    })().catch((error) => seen.push({ event: "failed", error: String(error) }));
    try {
      await open;
      const { text } = await ask("reply_to", { uri: mineUri });
      const event = await eventually(() => seen.find((e) => {
        if (e.event === "failed") throw new Error(e.error);
        const status = e.event === "notification" ? e.payload.status : e.payload;
        return (e.event === "update" || e.event === "notification") && status
          && contentOf(status).includes(text);
      }), "the reply on the user stream");
      return { replyText: text, event: event.event };
    } finally {
      stream.close();
      await Promise.race([reading, new Promise((resolve) => setTimeout(resolve, 2000))]);
    }
  });

  await step("read notifications and home", async () => {
    const notifications = await masto.v1.notifications.list({ limit: 20 });
    const notice = notifications.find((n) => n.status && n.status.content.includes(replyText));
    assert.ok(notice, JSON.stringify(notifications.map((n) => [n.type, n.status?.content])));
    assert.equal(notice.type, "mention");
    assert.equal(notice.account.acct, env.ownerAcct);
    const home = await masto.v1.timelines.home.list({ limit: 20 });
    assert.ok(home.some((s) => (s.reblog ?? s).id === threadId), "the thread left home");
  });

  await step("page through home by the Link header, and read an error", async () => {
    const pages = masto.v1.timelines.home.list({ limit: 1 }).values();
    const first = (await pages.next()).value;
    const second = (await pages.next()).value;
    assert.equal(first?.length, 1, JSON.stringify(first));
    assert.equal(second?.length, 1, JSON.stringify(second));
    assert.notEqual(second[0].id, first[0].id);
    assert.ok(Date.parse(second[0].createdAt) <= Date.parse(first[0].createdAt));
    const missing = await masto.v1.statuses.$select("999999999").fetch().then(
      () => undefined, (error) => error);
    assert.equal(missing?.statusCode, 404, String(missing));
    assert.ok(missing.message, "a 404 without Mastodon's error text");
    const client = await masto.v1.apps.verifyCredentials();
    assert.equal(client.name, "fedi client test (masto.js)");
  });

  say({ done: true });
  process.exit(0);
}

main().catch((error) => {
  say({
    step: current,
    error: String(error?.message ?? error),
    status: error?.statusCode,
    description: error?.description,
    details: error?.details,
  });
  process.exit(1);
});
