// Display formats shared by every view; one place so the fleet and the detail never disagree.

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const money = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", maximumFractionDigits: 2 });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });

export const DASH = "–";

export function percent(value) {
  return value == null ? DASH : `${Math.round(value)}%`;
}

export function usd(value) {
  return value == null ? DASH : money.format(value);
}

export function when(iso) {
  return iso ? dateTime.format(new Date(iso)) : DASH;
}

export function clock(iso) {
  return iso ? timeOnly.format(new Date(iso)) : DASH;
}

const dayAndTime = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});

/** Time of day for today's timestamps, day and time for older ones. */
export function short(iso) {
  if (!iso) return DASH;
  const date = new Date(iso);
  return date.toDateString() === new Date().toDateString() ? timeOnly.format(date) : dayAndTime.format(date);
}

/** "3 min ago" / "in 2 hr": for timestamps where the distance matters more than the date. */
export function ago(iso, now = Date.now()) {
  if (!iso) return DASH;
  const seconds = (new Date(iso).getTime() - now) / 1000;
  const abs = Math.abs(seconds);
  if (abs < 45) return relative.format(Math.round(seconds), "second");
  if (abs < 45 * 60) return relative.format(Math.round(seconds / 60), "minute");
  if (abs < 36 * 3600) return relative.format(Math.round(seconds / 3600), "hour");
  return relative.format(Math.round(seconds / 86400), "day");
}

/** 90 → "1m 30s", 5400 → "1h 30m". */
export function duration(seconds) {
  if (seconds == null) return DASH;
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)}s`;
  // Whole units read as "10m" rather than "10m 0s".
  const pair = (big, bigUnit, small, smallUnit) =>
    small ? `${big}${bigUnit} ${small}${smallUnit}` : `${big}${bigUnit}`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return pair(minutes, "m", Math.round(seconds % 60), "s");
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return pair(hours, "h", minutes % 60, "m");
  return pair(Math.floor(hours / 24), "d", hours % 24, "h");
}

export function isoOrNull(date) {
  return date ? date.toISOString() : null;
}
