// Object integrity proofs (FEP-8b32, eddsa-jcs-2022) made and checked by Fedify, for fedi's
// interop tests (tests/interop/test_fedify_integrity.py). No network: documents come on stdin.
//   {"mode": "sign", "actor": URL}                       -> {document, keyId, publicKeyMultibase}
//   {"mode": "verify", "document": {...}, "actors": {URL: actor document}} -> {verified: bool}
import process from "node:process";
import { generateCryptoKeyPair, signObject, verifyObject } from "@fedify/fedify";
import { Create, Note } from "@fedify/fedify/vocab";
import { exportMultibaseKey, preloadedContexts } from "@fedify/vocab-runtime";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));

function loaderFor(documents) {
  return async (url) => {
    const bare = url.split("#")[0];
    if (url in preloadedContexts) {
      return { contextUrl: null, documentUrl: url, document: preloadedContexts[url] };
    }
    if (bare in documents) {
      return { contextUrl: null, documentUrl: bare, document: documents[bare] };
    }
    throw new Error(`no document for ${url} (offline)`);
  };
}

if (input.mode === "sign") {
  const { privateKey, publicKey } = await generateCryptoKeyPair("Ed25519");
  const actor = new URL(input.actor);
  const keyId = new URL(`${input.actor}#ed25519-key`);
  const create = new Create({
    id: new URL(`${input.actor}/activities/1`),
    actor,
    // A followers-only post, as a member's post into a group: no Public-audience rewriting.
    to: new URL(`${input.actor}/followers`),
    object: new Note({
      id: new URL(`${input.actor}/notes/1`),
      attribution: actor,
      to: new URL(`${input.actor}/followers`),
      content: "Signed by Fedify — naïve café ✓",
    }),
  });
  const loader = loaderFor({});
  const signed = await signObject(create, privateKey, keyId, { contextLoader: loader });
  const document = await signed.toJsonLd({ format: "compact", contextLoader: loader });
  process.stdout.write(JSON.stringify({
    document,
    keyId: keyId.href,
    publicKeyMultibase: await exportMultibaseKey(publicKey),
  }));
} else if (input.mode === "verify") {
  const loader = loaderFor(input.actors);
  const verified = await verifyObject(Create, input.document, {
    contextLoader: loader,
    documentLoader: loader,
  });
  process.stdout.write(JSON.stringify({ verified: verified !== null }));
} else {
  process.stderr.write(`unknown mode ${input.mode}\n`);
  process.exit(2);
}
