// Building the console's elements. Text always goes in as textContent, never as HTML:
// everything shown may come from the server or the PBX (a caller's name included).

/**
 * A new element: `props` are attributes, except `text` (its text), `dataset` (data-*
 * values) and non-string values of properties the element has (`hidden: true`);
 * children are appended (nodes, or strings as text).
 */
export function element(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value);
  }
  for (const child of children) el.append(child);
  return el;
}
