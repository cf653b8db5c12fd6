// The Client refuses to send its token over plain http to a host that is
// not loopback, unless told to (allowInsecureHTTP), as the Go client does.
import assert from "node:assert/strict";
import http from "node:http";
import { networkInterfaces } from "node:os";
import { describe, test } from "node:test";

import { Client, Resolver } from "../dist/index.js";

const token = "kbt_insecure-test-token-0123456789abcdefghijklmnopq";

/** A non-loopback IPv4 address of this machine, if it has one. */
function outwardAddress() {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family === "IPv4" && !a.internal) return a.address;
    }
  }
  return undefined;
}

describe("plain http", () => {
  test("is refused to a host that is not loopback, before anything is sent", () => {
    for (const address of ["http://keybroker.example:8080", "http://10.1.2.3:8080", "http://[2001:db8::1]:8080", "http://128.0.0.1"]) {
      assert.throws(
        () => new Client({ address, token }),
        (err) => err instanceof TypeError && /plain http to a host that is not loopback/.test(err.message) && !err.message.includes(token),
        address,
      );
      assert.throws(() => new Resolver({ client: { address, token } }), TypeError, address);
    }
  });

  test("is allowed to loopback, and anywhere with allowInsecureHTTP", () => {
    for (const address of ["http://127.0.0.1:8080", "http://127.9.9.9", "http://localhost:8080", "http://LOCALHOST", "http://[::1]:8080", "http://[::ffff:127.0.0.1]"]) {
      new Client({ address, token }).close();
    }
    new Client({ address: "http://keybroker.example:8080", token, allowInsecureHTTP: true }).close();
    new Client({ address: "https://keybroker.example:8080", token }).close();
  });

  test("reaches a plain-http server off loopback only when allowed", async (t) => {
    const host = outwardAddress();
    if (host === undefined) {
      t.skip("this machine has no non-loopback address");
      return;
    }
    const seen = [];
    const server = http.createServer((req, res) => {
      seen.push(req.headers.authorization ?? "");
      res.writeHead(401, { "content-type": "application/json" }).end('{"error":{"code":"unauthenticated","message":"no"}}');
    });
    await new Promise((r) => server.listen(0, host, r));
    t.after(() => server.close());
    const address = `http://${host}:${server.address().port}`;
    assert.throws(() => new Client({ address, token }), TypeError);
    assert.equal(seen.length, 0);
    const c = new Client({ address, token, allowInsecureHTTP: true });
    t.after(() => c.close());
    await assert.rejects(c.resolve({ workspace: "ws1", provider: "openai" }), (err) => err.status === 401);
    assert.deepEqual(seen, [`Bearer ${token}`]);
  });
});
