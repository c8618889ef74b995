/**
 * Headless Chromium (Debian's /usr/bin/chromium) driven by a test, one command at a time.
 * The Python side is tests/browser.py (the `browser` fixture); any test may use it.
 *
 * Input: options as JSON in argv[2] (all optional):
 *   {"executablePath": "/usr/bin/chromium", "width": 1280, "height": 800, "timeout": 10000}
 * then commands on stdin, one JSON object a line, run in order. Each may carry "id"
 * (echoed) and "page" (a name; default "main"):
 *   {"cmd": "open", "url": U}                 a new page (or the named one) at U
 *   {"cmd": "goto", "url": U}                 navigate
 *   {"cmd": "type", "selector": S, "text": T, "clear": true}
 *   {"cmd": "click", "selector": S}
 *   {"cmd": "press", "selector": S, "key": "Enter"}
 *   {"cmd": "select", "selector": S, "value": V}
 *   {"cmd": "waitFor", "selector": S, "text": T, "timeout": MS}
 *        until an element matching S exists (whose text contains T, if given);
 *        answers {"text": its text}
 *   {"cmd": "texts", "selector": S}           {"texts": [each match's text]}
 *   {"cmd": "eval", "expression": JS}         {"value": the JSON-able result}
 *   {"cmd": "screenshot", "path": P, "fullPage": false, "selector": S}
 *   {"cmd": "viewport", "width": W, "height": H}   resize the page
 *   {"cmd": "close"}                          close the page
 *   {"cmd": "exit"}
 *
 * Output: one JSON object a line on stdout, each with an "event" field: one per
 * command, named after it ({"event": "waitFor", "id": 3, "text": "..."}), with
 * "error" when it failed; and, as they happen, {"event": "console", "page",
 * "type", "text"} for the pages' console errors and warnings and {"event":
 * "pageerror", "page", "text"} for uncaught exceptions, so a test can require none.
 * The browser runs with a fresh profile directory, removed at exit.
 *
 * A page may talk to the test itself: every page has `window.hubbubEmit(value)`, which
 * arrives as {"event": "page_event", "page", "data": value} in the order the page called
 * it (tests/browser.py's PageEvents reads them; browser_client.html runs scenario.mjs so).
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import puppeteer from 'puppeteer-core';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

const options = JSON.parse(process.argv[2] || '{}');
const timeout = options.timeout || 10000;
const profile = await mkdtemp(join(tmpdir(), 'hubbub-chromium-'));
const browser = await puppeteer.launch({
  executablePath: options.executablePath || '/usr/bin/chromium',
  headless: true,
  args: [...ARGS, `--user-data-dir=${profile}`],
  defaultViewport: { width: options.width || 1280, height: options.height || 800 },
});
const pages = new Map();

async function page(name, create = false) {
  let found = pages.get(name);
  if (!found && create) {
    found = await browser.newPage();
    found.setDefaultTimeout(timeout);
    found.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warn') {
        emit('console', { page: name, type: message.type(), text: message.text() });
      }
    });
    found.on('pageerror', (error) => emit('pageerror', { page: name, text: String(error) }));
    // Before any navigation, so that the page's scripts find it at once.
    await found.exposeFunction('hubbubEmit', (data) => emit('page_event', { page: name, data }));
    pages.set(name, found);
  }
  if (!found) throw new Error(`no page ${JSON.stringify(name)}: open it first`);
  return found;
}

async function waitFor(target, selector, text, ms) {
  const handle = await target.waitForFunction(
    (sel, wanted) => {
      for (const element of document.querySelectorAll(sel)) {
        if (wanted == null || element.textContent.includes(wanted)) return element;
      }
      return null;
    },
    { timeout: ms || timeout, polling: 50 },  // not "raf": background pages paint no frames
    selector,
    text ?? null,
  );
  const found = await handle.evaluate((element) => element.textContent);
  await handle.dispose();
  return found;
}

async function run(command) {
  const name = command.page || 'main';
  switch (command.cmd) {
    case 'open': {
      const target = await page(name, true);
      await target.goto(command.url, { waitUntil: 'load' });
      return { url: target.url() };
    }
    case 'goto': {
      const target = await page(name);
      await target.goto(command.url, { waitUntil: 'load' });
      return { url: target.url() };
    }
    case 'type': {
      const target = await page(name);
      if (command.clear) {
        await target.$eval(command.selector, (element) => { element.value = ''; });
      }
      await target.type(command.selector, command.text);
      return {};
    }
    case 'click':
      await (await page(name)).click(command.selector);
      return {};
    case 'press': {
      const target = await page(name);
      await target.focus(command.selector);
      await target.keyboard.press(command.key);
      return {};
    }
    case 'select':
      await (await page(name)).select(command.selector, command.value);
      return {};
    case 'waitFor':
      return { text: await waitFor(await page(name), command.selector, command.text, command.timeout) };
    case 'texts': {
      const target = await page(name);
      return { texts: await target.$$eval(command.selector, (all) => all.map((e) => e.textContent)) };
    }
    case 'eval':
      return { value: await (await page(name)).evaluate(command.expression) };
    case 'screenshot': {
      const target = await page(name);
      if (command.selector) {
        const element = await target.waitForSelector(command.selector);
        await element.screenshot({ path: command.path });
      } else {
        await target.screenshot({ path: command.path, fullPage: Boolean(command.fullPage) });
      }
      return { path: command.path };
    }
    case 'viewport':
      await (await page(name)).setViewport({ width: command.width, height: command.height });
      return {};
    case 'close': {
      const target = await page(name);
      pages.delete(name);
      await target.close();
      return {};
    }
    default:
      throw new Error(`unknown command ${JSON.stringify(command.cmd)}`);
  }
}

async function shutdown() {
  await browser.close().catch(() => {});
  await rm(profile, { recursive: true, force: true }).catch(() => {});
}

emit('ready', { version: await browser.version() });
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let command;
  try {
    command = JSON.parse(line);
  } catch (error) {
    emit('error', { error: `not JSON: ${error.message}` });
    continue;
  }
  const id = command.id;
  if (command.cmd === 'exit') {
    emit('exit', { id });
    break;
  }
  try {
    emit(command.cmd, { id, ...(await run(command)) });
  } catch (error) {
    emit(command.cmd, { id, error: String(error && error.message ? error.message : error) });
  }
}
await shutdown();
process.exit(0);
