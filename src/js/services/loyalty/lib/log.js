// JSON log lines on stderr with the fields flotilla_kit.logs writes (ts, level, service, logger,
// msg, exc, then extras), so `stack logs` shows them like the Python services' lines.

const LEVELS = { DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50 };

export function createLogger({ service, level = "INFO", json = true, write = (line) => process.stderr.write(line) }) {
  const threshold = LEVELS[level] ?? LEVELS.INFO;
  const emit = (levelName, logger, msg, extra = {}, error = undefined) => {
    if (LEVELS[levelName] < threshold) return;
    const ts = new Date().toISOString();
    if (!json) {
      const extras = Object.entries(extra).map(([k, v]) => ` ${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
      write(`${ts} ${levelName} ${logger}: ${msg}${extras.join("")}${error ? `\n${error.stack ?? error}` : ""}\n`);
      return;
    }
    const entry = { ts, level: levelName, service, logger, msg, ...extra };
    if (error) entry.exc = String(error.stack ?? error);
    write(JSON.stringify(entry) + "\n");
  };
  return {
    child(logger) {
      return {
        debug: (msg, extra) => emit("DEBUG", logger, msg, extra),
        info: (msg, extra) => emit("INFO", logger, msg, extra),
        warning: (msg, extra) => emit("WARNING", logger, msg, extra),
        error: (msg, extra, error) => emit("ERROR", logger, msg, extra, error),
      };
    },
  };
}

/** A logger that drops everything (unit tests). */
export const silentLogger = createLogger({ service: "test", level: "CRITICAL", write: () => {} });
