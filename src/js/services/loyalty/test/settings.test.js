import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_ASYNCAPI_FILE, SettingsError, loadSettings } from "../lib/settings.js";

test("the defaults name the instance after the host and port, and read the repository's AsyncAPI document", () => {
  const settings = loadSettings({ REDIS_URL: "redis://127.0.0.1:6379/0" });
  assert.equal(settings.port, 8007);
  assert.match(settings.instanceId, /-8007$/);
  assert.equal(settings.publicUrl, "http://127.0.0.1:8007");
  assert.equal(settings.asyncapiFile, DEFAULT_ASYNCAPI_FILE);
  assert.match(DEFAULT_ASYNCAPI_FILE, /\/docs\/asyncapi\.json$/);
});

test("variables named as the Python services' set the same things", () => {
  const settings = loadSettings({
    REDIS_URL: "redis://r:6379/1",
    PORT: "9001",
    HOST: "0.0.0.0",
    INSTANCE_ID: "loyalty-2",
    PUBLIC_URL: "http://loyalty:9001/",
    DISCOVERY: "redis",
    STREAM_CLAIM_IDLE_SECONDS: "1.5",
  });
  assert.deepEqual(
    [settings.port, settings.instanceId, settings.publicUrl, settings.discovery, settings.claimIdleMs],
    [9001, "loyalty-2", "http://loyalty:9001", "redis", 1500],
  );
});

test("every bad value is reported at once, naming its variable", () => {
  assert.throws(
    () => loadSettings({ REDIS_URL: "localhost", PORT: "70000", DISCOVERY: "zookeeper", LOG_JSON: "maybe" }),
    (error) =>
      error instanceof SettingsError &&
      error.problems.length === 4 &&
      error.problems.includes('REDIS_URL="localhost": Expected a redis:// or rediss:// URL') &&
      error.problems.some((p) => p.startsWith('PORT="70000": Expected an integer from 1 to 65535')) &&
      error.problems.some((p) => p.startsWith('DISCOVERY="zookeeper": Expected one of: none, redis, static, dns')),
  );
});

test("without REDIS_URL the service refuses to start, saying why it needs Redis", () => {
  assert.throws(() => loadSettings({}), /REDIS_URL="": the loyalty service keeps its points in Redis/);
});

test("PUBLIC_URL must be an http:// or https:// URL, as the gateway calls it", () => {
  for (const url of ["https://loyalty.internal", "http://[::1]:9001/base/"]) {
    assert.equal(loadSettings({ REDIS_URL: "redis://r:6379/0", PUBLIC_URL: url }).publicUrl, url.replace(/\/+$/, ""));
  }
  for (const url of ["ftp://loyalty:9001", "loyalty:9001", "http:/loyalty", "http://", "http://loyalty host", "javascript:alert(1)"]) {
    assert.throws(
      () => loadSettings({ REDIS_URL: "redis://r:6379/0", PUBLIC_URL: url }),
      (error) => error instanceof SettingsError && error.problems[0] === `PUBLIC_URL=${JSON.stringify(url)}: Expected an http:// or https:// URL`,
      url,
    );
  }
});

test("the instance registers whatever DISCOVERY is, unless DISCOVERY_REGISTER turns it off", () => {
  const base = { REDIS_URL: "redis://r:6379/0" };
  assert.equal(loadSettings({ ...base, DISCOVERY: "dns" }).discoveryRegister, true);
  assert.equal(loadSettings({ ...base, DISCOVERY_REGISTER: "false" }).discoveryRegister, false);
  assert.throws(
    () => loadSettings({ ...base, DISCOVERY_REGISTER: "sometimes" }),
    (error) => error instanceof SettingsError && error.problems[0].startsWith('DISCOVERY_REGISTER="sometimes": Expected a boolean'),
  );
});

test("the registered URL's host is ADVERTISE_HOST (the pod IP), an IPv6 address in brackets", () => {
  const base = { REDIS_URL: "redis://r:6379/0", PORT: "8007" };
  assert.equal(loadSettings({ ...base, HOST: "0.0.0.0", ADVERTISE_HOST: "10.1.2.3" }).publicUrl, "http://10.1.2.3:8007");
  assert.equal(loadSettings({ ...base, HOST: "::1" }).publicUrl, "http://[::1]:8007");
  assert.equal(loadSettings({ ...base, ADVERTISE_HOST: "fd00::17" }).publicUrl, "http://[fd00::17]:8007");
  for (const bad of ["10.0.0.1:8000", "[::1]", "fe80::1%eth0", "$(POD_IP)", "-pod"]) {
    assert.throws(
      () => loadSettings({ ...base, ADVERTISE_HOST: bad }),
      (error) => error instanceof SettingsError && error.problems[0].startsWith(`ADVERTISE_HOST=${JSON.stringify(bad)}`),
      bad,
    );
  }
});
