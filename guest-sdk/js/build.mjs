#!/usr/bin/env node
// Builds a JavaScript scenario into a chaperon component.
//
//   node guest-sdk/js/build.mjs --tools DIR [--engine quickjs|starlingmonkey] [--wit DIR] -o OUT.wasm SCENARIO.js
//
// DIR holds node_modules with the pinned tools of guest-sdk/js/tools/package.json
// (scripts/build-guests installs them into target/polyglot/tools/js). The scenario module's
// default export is the scenario (a `Scenario` subclass or an object with `run(s)`); it imports
// the SDK as "chaperon". Steps:
//   1. a generated entry module exports init/run/teardown/invoke from `exportScenario(...)`;
//   2. esbuild bundles entry + scenario + SDK + the engine's host bindings into one ES module
//      (the WIT imports `chaperon:scenario/*` stay imports);
//   3. componentize-qjs --sync (QuickJS) or componentize-js -d http fetch-event
//      (StarlingMonkey) makes the component against wit/.
// Intermediates (entry, bundle, the patched wit/ copy) go to
// target/polyglot/stage/js/ENGINE/NAME/ of this repository, never next to the scenario or the
// output; the only file written elsewhere is OUT.wasm, reported as `wrote OUT.wasm (SIZE)`.
// QuickJS: componentize-qjs 0.4.5 exports its own Wizer initializer as `init`, which collides
// with the world's `init` (it panics: "duplicate items detected"). So the QuickJS build uses a
// copy of wit/ whose `init` export is named `qnit`, then renames the top-level component exports
// `init` (the initializer) → `qjsi` and `qnit` → `init` (same lengths: a byte patch of the export
// section; nothing else refers to export names).

import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const stageRoot = resolve(here, "../../target/polyglot/stage/js");
const ENGINES = ["quickjs", "starlingmonkey"];

function usage(message) {
  console.error(`error: ${message}`);
  console.error("usage: node guest-sdk/js/build.mjs --tools DIR [--engine quickjs|starlingmonkey] [--wit DIR] -o OUT.wasm SCENARIO.js");
  process.exit(1);
}

function parseArgs(argv) {
  const args = { engine: "quickjs", wit: resolve(here, "../../wit"), tools: undefined, out: undefined, scenario: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
    if (a === "--engine") args.engine = next();
    else if (a === "--wit") args.wit = resolve(next());
    else if (a === "--tools") args.tools = resolve(next());
    else if (a === "-o" || a === "--out") args.out = resolve(next());
    else if (a.startsWith("-")) usage(`unknown option ${a}`);
    else if (args.scenario === undefined) args.scenario = resolve(a);
    else usage(`one scenario at a time (got ${args.scenario} and ${a})`);
  }
  if (!ENGINES.includes(args.engine)) usage(`--engine must be one of ${ENGINES.join(", ")}`);
  if (!args.tools) usage("--tools DIR is required (scripts/build-guests installs the tools into target/polyglot/tools/js)");
  if (!args.out) usage("-o OUT.wasm is required");
  if (!args.scenario) usage("no scenario file given");
  if (!existsSync(args.scenario)) usage(`${args.scenario} does not exist`);
  return args;
}

function run(cmd, argv) {
  const r = spawnSync(cmd, argv, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
  if (r.error) throw new Error(`cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    const out = `${r.stdout}\n${r.stderr}`.trim().split("\n").filter((l) => !/^\s+\d+: /.test(l));
    throw new Error(`${basename(cmd)} failed (exit ${r.status}):\n${out.slice(-25).join("\n")}`);
  }
}

// The entry module: the four exports of the world, from the scenario's default export.
function entrySource(scenarioPath, initName) {
  return [
    `import scenario from ${JSON.stringify(scenarioPath)};`,
    `import { exportScenario } from "chaperon";`,
    `const entry = exportScenario(scenario);`,
    `export function ${initName}() { return entry.init(); }`,
    `export function run() { return entry.run(); }`,
    `export function teardown() { return entry.teardown(); }`,
    `export function invoke(fn, args) { return entry.invoke(fn, args); }`,
    "",
  ].join("\n");
}

async function bundle(args, stage, initName) {
  const require = createRequire(join(args.tools, "package.json"));
  const esbuild = require("esbuild");
  const entry = join(stage, "entry.js");
  writeFileSync(entry, entrySource(args.scenario, initName));
  const sdk = join(here, "src/index.js");
  const bindings = join(here, `src/host-${args.engine}.js`);
  const outfile = join(stage, "bundle.js");
  await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    outfile,
    logLevel: "error",
    plugins: [
      {
        name: "chaperon",
        setup(b) {
          b.onResolve({ filter: /^chaperon$/ }, () => ({ path: sdk }));
          b.onResolve({ filter: /^chaperon:host$/ }, () => ({ path: bindings }));
          b.onResolve({ filter: /^chaperon:scenario\// }, (a) => ({ path: a.path, external: true }));
        },
      },
    ],
  });
  return outfile;
}

// Renames the top-level component export `from` to `to` (equal lengths) in place.
export function renameExport(bytes, from, to) {
  if (from.length !== to.length) throw new Error("renameExport needs names of equal length");
  const leb = (pos) => {
    let r = 0, s = 0, b;
    do { b = bytes[pos++]; r += (b & 0x7f) * 2 ** s; s += 7; } while (b & 0x80);
    return [r, pos];
  };
  const needle = Buffer.concat([Buffer.from([from.length]), Buffer.from(from)]);
  let pos = 8, hits = 0;
  while (pos < bytes.length) {
    const id = bytes[pos];
    const [size, start] = leb(pos + 1);
    const end = start + size;
    if (id === 11) { // component export section
      for (let i = bytes.indexOf(needle, start); i !== -1 && i < end; i = bytes.indexOf(needle, i + 1)) {
        Buffer.from(to).copy(bytes, i + 1);
        hits++;
      }
    }
    pos = end;
  }
  if (hits !== 1) throw new Error(`expected one top-level export \`${from}\`, found ${hits}`);
}

function quickjsWit(wit, stage) {
  const dir = join(stage, "wit");
  rmSync(dir, { recursive: true, force: true });
  cpSync(wit, dir, { recursive: true });
  let found = 0;
  for (const f of readdirSync(dir).filter((f) => f.endsWith(".wit"))) {
    const p = join(dir, f);
    const src = readFileSync(p, "utf8");
    const out = src.replace(/(\bexport\s+)init(\s*:\s*func)/g, (_, a, b) => { found++; return `${a}qnit${b}`; });
    writeFileSync(p, out);
  }
  if (found !== 1) throw new Error(`expected one \`export init: func\` in ${wit}, found ${found}`);
  return dir;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const stage = join(stageRoot, args.engine, basename(args.out, ".wasm"));
  mkdirSync(stage, { recursive: true });
  mkdirSync(dirname(args.out), { recursive: true });
  const bin = (name) => join(args.tools, "node_modules/.bin", name);
  const tmpOut = join(stage, "component.wasm");
  if (args.engine === "quickjs") {
    const js = await bundle(args, stage, "qnit");
    const wit = quickjsWit(args.wit, stage);
    run(bin("componentize-qjs"), ["--sync", "--wit", wit, "--world", "scenario", "--js", js, "-o", tmpOut]);
    const bytes = readFileSync(tmpOut);
    renameExport(bytes, "init", "qjsi");
    renameExport(bytes, "qnit", "init");
    writeFileSync(tmpOut, bytes);
  } else {
    const js = await bundle(args, stage, "init");
    run(bin("componentize-js"), ["--wit", args.wit, "--world-name", "scenario", "-d", "http", "fetch-event", "-o", tmpOut, js]);
  }
  cpSync(tmpOut, args.out);
  rmSync(tmpOut, { force: true });
  console.log(`wrote ${relative(process.cwd(), args.out) || args.out} (${humanSize(statSync(args.out).size)})`);
}

/** A size as people read it: 119 KB, 1.9 MB. */
function humanSize(bytes) {
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  if (bytes >= 1e3) return `${Math.round(bytes / 1e3)} KB`;
  return `${bytes} bytes`;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(`error: ${e.message}`);
    process.exit(1);
  });
}
