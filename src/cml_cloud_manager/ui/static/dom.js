// Building DOM from data with textContent only: nothing from the API is ever parsed as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, props, children) {
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value == null || value === false) continue;
    if (key === "class") element.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else if (key === "text") element.textContent = value;
    else if (value === true) element.setAttribute(key, "");
    else element.setAttribute(key, String(value));
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** h("button", {class: "btn", onclick}, "Start") */
export function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

export function svg(tag, props, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children);
}

export const $ = (selector, root = document) => root.querySelector(selector);

/**
 * Replace `old` by `fresh` without stealing the keyboard user's place: live updates re-render rows while
 * someone may be tabbing through them, so focus moves to the element with the same data-key.
 */
export function swap(old, fresh) {
  const active = document.activeElement;
  const key = old.contains(active) ? active?.dataset?.key : null;
  old.replaceWith(fresh);
  if (key) fresh.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

/** Fill a container, keeping focus as swap() does when the container itself stays. */
export function fill(container, ...children) {
  const active = document.activeElement;
  const key = container.contains(active) ? active?.dataset?.key : null;
  container.replaceChildren();
  append(container, children);
  if (key) container.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
  return container;
}
