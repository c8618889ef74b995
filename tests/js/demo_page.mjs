// Runs the demo page's script (src/hubbub/server/static/demo.html) under Node with a
// minimal stand-in for the DOM and the `ws` package as WebSocket, against a real
// server: `node demo_page.mjs <demo.html> <http://127.0.0.1:PORT/>`. Every change of
// the status line is printed as one JSON line {"status": text, "class": className},
// and every system line as {"system": text}. Runs until killed.
import { readFileSync } from "node:fs";
import WebSocket from "ws";

const [, , pagePath, pageUrl] = process.argv;
const html = readFileSync(pagePath, "utf8");
const script = html.slice(html.indexOf("<script>") + 8, html.lastIndexOf("</script>"));
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

function element(id) {
  let text = "", cls = "";
  const el = {
    id, value: "", disabled: false, scrollTop: 0, scrollHeight: 0, clientHeight: 0,
    children: [],
    get textContent() { return text; },
    set textContent(value) { text = String(value); },
    get className() { return cls; },
    set className(value) {
      cls = String(value);
      // setStatus() sets the text first, then the class: one line per status change.
      if (id === "status") print({ status: text, class: cls });
    },
    addEventListener() {},
    focus() {},
    append(...items) {
      el.children.push(...items);
      for (const item of items) if (item.className === "system") print({ system: item.textContent });
    },
    prepend(...items) { el.children.unshift(...items); },
    replaceChildren() { el.children = []; },
  };
  return el;
}

const elements = new Map();
globalThis.document = {
  getElementById(id) {
    if (!elements.has(id)) elements.set(id, element(id));
    return elements.get(id);
  },
  createElement() { return element(""); },
};
globalThis.location = new URL(pageUrl);
globalThis.localStorage = { getItem() { return null; }, setItem() {} };
globalThis.WebSocket = WebSocket;
new Function(script)();
