/**
 * Python's `strftime` (C locale, local time) and Salt's `date_cast`, for the `strftime` /
 * `date_format` filters and `salt['status.time']`. Written from Python's and Salt's documented
 * behaviour: a directive Python does not know is kept as written, as glibc does.
 */
import { PyError } from "./values.js";

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

const pad = (n: number, w = 2, c = "0") => String(n).padStart(w, c);

function dayOfYear(d: Date): number {
  return (
    (Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()) - Date.UTC(d.getFullYear(), 0, 1)) / 86400000 + 1
  );
}

/** Week number of the year, weeks starting on `first` (0 Sunday, 1 Monday); days before week 1 are week 0. */
function weekNumber(d: Date, first: 0 | 1): number {
  const wd = (d.getDay() + 7 - first) % 7;
  return Math.floor((dayOfYear(d) - 1 - wd + 7) / 7);
}

function utcOffset(d: Date, colon = false): string {
  const off = -d.getTimezoneOffset();
  const sign = off < 0 ? "-" : "+";
  const a = Math.abs(off);
  return `${sign}${pad(Math.floor(a / 60))}${colon ? ":" : ""}${pad(a % 60)}`;
}

function zoneName(d: Date): string {
  const part = new Intl.DateTimeFormat("en-US", { timeZoneName: "short" })
    .formatToParts(d)
    .find((p) => p.type === "timeZoneName")?.value;
  // Intl spells UTC as "UTC" and others as "GMT+1"; glibc prints the abbreviation or the offset.
  if (!part || part === "GMT") return "UTC";
  return part.startsWith("GMT") ? utcOffset(d) : part;
}

/** `date.strftime(format)` for a local-time Date; `micro` is Python's microseconds (%f). */
export function strftime(d: Date, format: string, micro = d.getMilliseconds() * 1000): string {
  return format.replace(/%([-]?)([a-zA-Z%])/g, (whole, flag: string, c: string) => {
    const num = (n: number, w = 2) => (flag === "-" ? String(n) : pad(n, w));
    const h12 = d.getHours() % 12 === 0 ? 12 : d.getHours() % 12;
    switch (c) {
      case "a":
        return DAYS[d.getDay()]!.slice(0, 3);
      case "A":
        return DAYS[d.getDay()]!;
      case "b":
      case "h":
        return MONTHS[d.getMonth()]!.slice(0, 3);
      case "B":
        return MONTHS[d.getMonth()]!;
      case "c":
        return strftime(d, "%a %b %e %H:%M:%S %Y");
      case "C":
        return num(Math.floor(d.getFullYear() / 100));
      case "d":
        return num(d.getDate());
      case "D":
      case "x":
        return strftime(d, "%m/%d/%y");
      case "e":
        return flag === "-" ? String(d.getDate()) : pad(d.getDate(), 2, " ");
      case "F":
        return strftime(d, "%Y-%m-%d");
      case "f":
        return pad(micro, 6);
      case "H":
        return num(d.getHours());
      case "I":
        return num(h12);
      case "j":
        return num(dayOfYear(d), 3);
      case "k":
        return pad(d.getHours(), 2, " ");
      case "l":
        return pad(h12, 2, " ");
      case "m":
        return num(d.getMonth() + 1);
      case "M":
        return num(d.getMinutes());
      case "n":
        return "\n";
      case "p":
        return d.getHours() < 12 ? "AM" : "PM";
      case "P":
        return d.getHours() < 12 ? "am" : "pm";
      case "r":
        return strftime(d, "%I:%M:%S %p");
      case "R":
        return strftime(d, "%H:%M");
      case "s":
        return String(Math.floor(d.getTime() / 1000));
      case "S":
        return num(d.getSeconds());
      case "t":
        return "\t";
      case "T":
      case "X":
        return strftime(d, "%H:%M:%S");
      case "u":
        return String(d.getDay() === 0 ? 7 : d.getDay());
      case "U":
        return num(weekNumber(d, 0));
      case "w":
        return String(d.getDay());
      case "W":
        return num(weekNumber(d, 1));
      case "y":
        return num(d.getFullYear() % 100);
      case "Y":
        return String(d.getFullYear());
      case "z":
        return utcOffset(d);
      case "Z":
        return zoneName(d);
      case "%":
        return "%";
      default:
        return whole;
    }
  });
}

/**
 * Salt's `date_cast` without timelib (Salt's default install): none is now, a number or numeric
 * string is a Unix timestamp (`datetime.fromtimestamp`, local time); an ISO date
 * (`2002-12-25`, `2002/12/25`, with an optional `HH:MM[:SS]`) is read as local time, as timelib
 * would read it. Anything else is Salt's error.
 */
export function dateCast(value: unknown): { date: Date; micro: number } {
  if (value === null || value === undefined) return withMicro(Date.now() * 1000);
  if (typeof value === "number" || typeof value === "bigint") return withMicro(Number(value) * 1e6);
  const text = String(value).trim();
  if (/^[+-]?\d+(\.\d*)?$/.test(text)) return withMicro(Number(text) * 1e6);
  const m = /^(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$/.exec(text);
  if (m) {
    const [y, mo, d, h, mi, s] = m.slice(1).map((x) => (x === undefined ? 0 : Number(x)));
    const date = new Date(y!, mo! - 1, d!, h!, mi!, s!);
    if (date.getMonth() === mo! - 1 && date.getDate() === d!) return { date, micro: 0 };
  }
  throw new PyError("RuntimeError", `Unable to parse ${text}. Consider installing timelib`);
}

function withMicro(us: number): { date: Date; micro: number } {
  const whole = Math.floor(us);
  return { date: new Date(Math.floor(whole / 1000)), micro: ((whole % 1e6) + 1e6) % 1e6 };
}
