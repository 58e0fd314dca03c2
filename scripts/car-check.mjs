#!/usr/bin/env node
// car-check.mjs - an independent check of a CAR file, with the reference JavaScript
// implementations (@ipld/car, multiformats) rather than arke-core: every block re-hashed,
// every header root present.
//
//   node scripts/car-check.mjs [--allow-unverifiable] <file.car>
//
// stdout: one JSON line
//   {"version":1,"roots":[...],"blocks":N,"bytes":N,"bad":[cids...],"unverifiable":N,
//    "roots_present":true,"ok":true}
// plus "error":"..." when the file could not be read to its end (truncated or malformed).
// blocks counts sections (duplicates included), bytes their block data. A block is verified
// for sha2-256 and identity multihashes; any other hash function counts as unverifiable, which
// fails the check unless --allow-unverifiable. Exit 0 if ok, 1 if not (an unreadable file
// included, with "error"), 2 on a usage or setup error (message on stderr).
//
// The modules come from the test-node kit installed by `scripts/ipfs-node.sh install`
// (scripts/ipfs-node/package.json pins them): ARKE_NODE_MODULES (a node_modules folder), else
// $IPFS_NODE_DIR/node_modules, else ${XDG_CACHE_HOME:-~/.cache}/arke-ipfs-node/node_modules,
// the same folder ipfs-node.sh installs into. Bare specifiers are resolved by Node's own
// resolver (package exports and conditions) as if imported from that folder.

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { register } from 'node:module'
import { pathToFileURL } from 'node:url'

function usage (msg) {
  if (msg) process.stderr.write(`car-check: ${msg}\n`)
  process.stderr.write('usage: node scripts/car-check.mjs [--allow-unverifiable] <file.car>\n')
  process.exit(2)
}

const args = process.argv.slice(2)
let allowUnverifiable = false
const files = []
for (const a of args) {
  if (a === '--allow-unverifiable') allowUnverifiable = true
  else if (a === '-h' || a === '--help') usage()
  else if (a.startsWith('-') && a !== '-') usage(`unknown option ${a}`)
  else files.push(a)
}
if (files.length !== 1) usage('expected exactly one CAR file')
const carPath = files[0]

function kitModules () {
  if (process.env.ARKE_NODE_MODULES) return path.resolve(process.env.ARKE_NODE_MODULES)
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache')
  const dir = process.env.IPFS_NODE_DIR || path.join(cache, 'arke-ipfs-node')
  return path.join(path.resolve(dir), 'node_modules')
}

const modules = kitModules()
if (!fs.existsSync(path.join(modules, '@ipld', 'car', 'package.json')) ||
    !fs.existsSync(path.join(modules, 'multiformats', 'package.json'))) {
  usage(`@ipld/car and multiformats not found in ${modules}: run scripts/ipfs-node.sh install ` +
    '(or set ARKE_NODE_MODULES to a node_modules folder that has them)')
}
if (typeof register !== 'function') usage(`Node ${process.version} is too old (needs >= 18.19 or 20.6)`)

// A resolve hook: bare specifiers of the packages used here resolve from the kit's folder.
const parent = pathToFileURL(path.join(path.dirname(modules), 'car-check-parent.mjs')).href
const hook = `
const parent = ${JSON.stringify(parent)}
export async function resolve (specifier, context, next) {
  if (specifier.startsWith('@ipld/car') || specifier.startsWith('multiformats')) {
    return next(specifier, { ...context, parentURL: parent })
  }
  return next(specifier, context)
}
`
register('data:text/javascript,' + encodeURIComponent(hook))

const { CarBlockIterator } = await import('@ipld/car/iterator')
const { sha256 } = await import('multiformats/hashes/sha2')
const { identity } = await import('multiformats/hashes/identity')

function sameBytes (a, b) {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length),
    Buffer.from(b.buffer, b.byteOffset, b.length)) === 0
}

const result = {
  version: null,
  roots: [],
  blocks: 0,
  bytes: 0,
  bad: [],
  unverifiable: 0,
  roots_present: false,
  ok: false
}
try {
  const stream = fs.createReadStream(carPath, { highWaterMark: 1 << 20 })
  const car = await CarBlockIterator.fromIterable(stream)
  result.version = car.version
  const roots = await car.getRoots()
  result.roots = roots.map(String)
  const missing = new Set(result.roots)
  for await (const { cid, bytes } of car) {
    result.blocks++
    result.bytes += bytes.length
    const mh = cid.multihash
    let digest
    if (mh.code === sha256.code) digest = await sha256.digest(bytes)
    else if (mh.code === identity.code) digest = identity.digest(bytes)
    if (!digest) result.unverifiable++
    else if (!sameBytes(digest.bytes, mh.bytes)) result.bad.push(String(cid))
    if (missing.size) missing.delete(String(cid))
  }
  result.roots_present = result.roots.length > 0 && missing.size === 0
} catch (e) {
  result.error = e.message || String(e)
}
result.ok = !result.error && result.bad.length === 0 && result.roots_present &&
  (allowUnverifiable || result.unverifiable === 0)
process.stdout.write(JSON.stringify(result) + '\n')
process.exitCode = result.ok ? 0 : 1
