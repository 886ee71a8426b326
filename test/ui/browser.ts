// test/ui/browser.ts — Debian's chromium driven by playwright-core for the UI tests: a fresh profile per launch, screenshots into test-results/.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type BrowserContext, type Page } from "playwright-core";

/** The system chromium (`apt-get install chromium`); FLOWMETAL_CHROMIUM overrides. */
export const chromiumPath = process.env.FLOWMETAL_CHROMIUM ?? "/usr/bin/chromium";
export const hasChromium = existsSync(chromiumPath);

const root = fileURLToPath(new URL("../..", import.meta.url));
export const resultsDir = join(root, "test-results", "ui");

export interface Browser extends AsyncDisposable {
  readonly context: BrowserContext;
  newPage(): Promise<Page>;
}

/** Launches headless chromium with a fresh user data dir (removed on dispose). */
export async function launchBrowser(): Promise<Browser> {
  const profile = await mkdtemp(join(tmpdir(), "fm-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1400, height: 950 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  return {
    context,
    async newPage() {
      const page = await context.newPage();
      page.setDefaultTimeout(15_000);
      return page;
    },
    async [Symbol.asyncDispose]() {
      await context.close().catch(() => undefined);
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** Saves a full-page screenshot as test-results/ui/<name>.png. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(resultsDir, { recursive: true });
  const path = join(resultsDir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
