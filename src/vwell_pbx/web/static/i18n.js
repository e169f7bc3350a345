// The console's languages: choosing one, loading its catalogue, and putting its strings
// into the page. Every human-readable string of the console lives in one catalogue per
// language (/static/i18n/LANG.json); the page's HTML and scripts only name keys.
//
// A catalogue is {"strings": {KEY: TEXT | {PLURAL_CATEGORY: TEXT}}, "methods": {...}}.
// TEXT may hold {param} placeholders and `code` spans (shown as <code>, never as HTML).
// "methods" translates the server's own English method summaries and argument
// descriptions ({NAME: {summary, arguments: {ARG: TEXT}}}); a method or argument that
// has no entry is shown with the server's English text.
//
// Markup the page uses:
//   data-i18n="KEY"                      the element's text
//   data-i18n-aria-label / -placeholder / -title="KEY"   that attribute
//   data-i18n-empty="KEY"                data-empty (CSS shows it when a list is empty)
//   data-i18n-label="KEY"                data-label (a table cell's column name, shown by
//                                        CSS when a narrow screen lays rows out as cards)
//   data-i18n-params='{"name": ...}'     the placeholders' values (set by say())
//   data-method="NAME" [data-argument="ARG"]   a method's summary or argument description

/** localStorage key of the language the user picked (absent: follow the browser). */
export const LANGUAGE_KEY = 'vwell-console-language';

const ATTRIBUTES = {
  i18nAriaLabel: 'aria-label',
  i18nPlaceholder: 'placeholder',
  i18nTitle: 'title',
  i18nEmpty: 'data-empty',
  i18nLabel: 'data-label',
};

/**
 * The language to show: the saved choice if it is still offered, else the first of the
 * browser's preferred languages (navigator.languages, the Accept-Language order) that is
 * offered, matched on the primary subtag (ru-RU -> ru), else the fallback.
 */
export function chooseLanguage(saved, preferred, supported, fallback) {
  if (saved && supported.includes(saved)) return saved;
  for (const tag of preferred || []) {
    const primary = String(tag).toLowerCase().split('-')[0];
    if (supported.includes(primary)) return primary;
  }
  return fallback;
}

/** Replace each {name} whose name is in params; anything else is left as written. */
export function fill(template, params = {}) {
  return template.replace(/\{(\w+)\}/g, (whole, name) =>
    (Object.hasOwn(params, name) ? String(params[name]) : whole));
}

/**
 * Set el's content to text, `quoted` parts as <code>. The quotes are split before
 * the placeholders are filled, so a value that contains a backtick stays plain text.
 */
export function renderInto(el, template, params = {}) {
  const parts = template.split('`');
  const nodes = parts.map((part, index) => {
    const text = fill(part, params);
    if (index % 2 === 0) return document.createTextNode(text);
    const code = document.createElement('code');
    code.textContent = text;
    return code;
  });
  el.replaceChildren(...nodes);
}

/** One language's strings, plurals and method texts. */
export class Catalogue {
  constructor(language, data) {
    this.language = language;
    this.strings = data.strings || {};
    this.methods = data.methods || {};
    this.plurals = new Intl.PluralRules(language);
    this.numbers = new Intl.NumberFormat(language);
  }

  /** The template for key (a plural one chosen by params.count); the key if missing. */
  template(key, params = {}) {
    const entry = this.strings[key];
    if (entry === undefined) return key;
    if (typeof entry === 'string') return entry;
    const category = this.plurals.select(Number(params.count));
    return entry[category] ?? entry.other ?? key;
  }

  /** The text for key with its placeholders filled (numbers formatted for the language). */
  t(key, params = {}) {
    return fill(this.template(key, params), this.formatted(params)).replaceAll('`', '');
  }

  /** Numbers in params written the language's way (1 500, 1,5). */
  formatted(params) {
    const out = {};
    for (const [name, value] of Object.entries(params)) {
      out[name] = typeof value === 'number' ? this.numbers.format(value) : value;
    }
    return out;
  }

  /** A method's summary (or an argument's description) in this language, else english. */
  methodText(method, argument, english) {
    const entry = this.methods[method];
    const text = argument ? entry?.arguments?.[argument] : entry?.summary;
    return typeof text === 'string' ? text : english;
  }
}

const cache = new Map();

/** Fetch /static/i18n/LANG.json once per page (the server answers 304 after that). */
export async function loadCatalogue(language) {
  if (!cache.has(language)) {
    const pending = fetch(`/static/i18n/${language}.json`, {cache: 'no-cache'}).then(
      async (response) => {
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        return new Catalogue(language, await response.json());
      });
    pending.catch(() => cache.delete(language));  // a failed load may be retried
    cache.set(language, pending);
  }
  return cache.get(language);
}

/** The offered languages: {fallback, languages: {CODE: its own name}}. */
export async function loadLanguages() {
  const response = await fetch('/static/i18n/languages.json', {cache: 'no-cache'});
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

/** Show key's text in el now, and again whenever the page is translated. */
export function say(catalogue, el, key, params) {
  el.dataset.i18n = key;
  if (params) el.dataset.i18nParams = JSON.stringify(params);
  else delete el.dataset.i18nParams;
  translateElement(catalogue, el);
}

/** Set an attribute from key now and on every translation (see ATTRIBUTES). */
export function sayAttribute(catalogue, el, attribute, key, params) {
  const [property] = Object.entries(ATTRIBUTES).find(([, name]) => name === attribute);
  el.dataset[property] = key;
  if (params) el.dataset.i18nParams = JSON.stringify(params);
  translateElement(catalogue, el);
}

/** Show a method's summary (argument omitted) or an argument's description in el. */
export function sayMethodText(catalogue, el, method, argument, english) {
  el.dataset.method = method;
  if (argument) el.dataset.argument = argument;
  el.dataset.english = english;
  translateElement(catalogue, el);
}

/** Show text that is not ours (a server's message, a user's value) and stop translating el. */
export function sayRaw(el, text) {
  delete el.dataset.i18n;
  delete el.dataset.i18nParams;
  el.textContent = text;
}

function paramsOf(el) {
  if (!el.dataset.i18nParams) return {};
  try { return JSON.parse(el.dataset.i18nParams); } catch { return {}; }
}

function translateElement(catalogue, el) {
  const params = paramsOf(el);
  if (el.dataset.i18n) {
    // The plural form is chosen on the raw number, then the number is formatted.
    const template = catalogue.template(el.dataset.i18n, params);
    renderInto(el, template, catalogue.formatted(params));
  }
  for (const [property, attribute] of Object.entries(ATTRIBUTES)) {
    const key = el.dataset[property];
    if (key) el.setAttribute(attribute, catalogue.t(key, params));
  }
  if (el.dataset.method) {
    const english = el.dataset.english || '';
    renderInto(el, catalogue.methodText(el.dataset.method, el.dataset.argument, english));
  }
}

const SELECTOR = [
  '[data-i18n]', '[data-method]',
  ...Object.keys(ATTRIBUTES).map((p) => `[data-${p.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}]`),
].join(',');

/** Put catalogue's strings into every marked element under root (and <html lang>). */
export function translatePage(catalogue, root = document) {
  document.documentElement.lang = catalogue.language;
  for (const el of root.querySelectorAll(SELECTOR)) translateElement(catalogue, el);
}
