// report-browser-check.js: opens a `tessera report` HTML file in headless Chromium
// (Debian's /usr/bin/chromium, driven by the npm package playwright-core) and checks
// what a person would see: no console error, no page error, no request leaving the
// file (a self-contained report fetches nothing), and every figure present and
// non-empty through the DOM; then writes a full-page screenshot.
//
//   node scripts/report-browser-check.js REPORT.html SHOT.png [--modules] [--patch] [--no-curves]
//
// playwright-core is found through PLAYWRIGHT_DIR (a node_modules folder; what
// scripts/report-browser-deps.sh installs), else node's usual search; the browser
// through CHROMIUM (default /usr/bin/chromium). Prints one line per check and, last,
// "report-browser-check: N passed, N failed"; exit status 1 when anything failed,
// 2 when the browser could not be started.
'use strict';
const path = require('path');

function loadPlaywright() {
  const dirs = process.env.PLAYWRIGHT_DIR ? [path.resolve(process.env.PLAYWRIGHT_DIR)] : undefined;
  return require(require.resolve('playwright-core', dirs ? { paths: dirs } : undefined));
}

async function main() {
  const args = process.argv.slice(2);
  const files = args.filter((a) => !a.startsWith('--'));
  if (files.length !== 2) {
    console.error('usage: node report-browser-check.js REPORT.html SHOT.png [--modules] [--patch] [--no-curves]');
    process.exit(2);
  }
  const [report, shot] = files.map((f) => path.resolve(f));
  const want = (flag) => args.includes(flag);
  let passed = 0, failed = 0;
  const check = (ok, what) => {
    if (ok) passed++;
    else failed++;
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  };

  const { chromium } = loadPlaywright();
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
  } catch (e) {
    console.error(`report-browser-check: cannot start Chromium: ${e.message.split('\n')[0]}`);
    process.exit(2);
  }
  const page = await browser.newPage({ viewport: { width: 1150, height: 900 } });
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`failed request: ${r.url()}`));
  page.on('request', (r) => {
    const u = r.url();
    if (u !== `file://${report}` && !u.startsWith('data:')) problems.push(`request leaving the file: ${u}`);
  });
  await page.goto(`file://${report}`, { waitUntil: 'load' });

  // An SVG figure: present, laid out with a size, and drawing several shapes.
  const svgFigure = async (id, minShapes) => {
    const r = await page.evaluate(([id]) => {
      const e = document.getElementById(id);
      if (!e) return null;
      const b = e.getBoundingClientRect();
      const shapes = e.querySelectorAll('path,rect,circle,line').length;
      const drawn = [...e.querySelectorAll('path')].filter((p) => (p.getAttribute('d') || '').length > 3).length;
      return { w: b.width, h: b.height, shapes, drawn, tag: e.tagName.toLowerCase() };
    }, [id]);
    check(r && r.tag === 'svg' && r.w > 0 && r.h > 0 && r.shapes >= minShapes,
          `#${id}: ${r ? `${r.tag} ${Math.round(r.w)}x${Math.round(r.h)}, ${r.shapes} shapes` : 'missing'}`);
    return r;
  };
  // Images inside a section: at least `min`, each decoded (naturalWidth > 0) and shown.
  const images = async (id, min) => {
    const r = await page.evaluate(([id]) => {
      const e = document.getElementById(id);
      if (!e) return null;
      return [...e.querySelectorAll('img')].map((i) => {
        const b = i.getBoundingClientRect();
        return { nw: i.naturalWidth, nh: i.naturalHeight, ok: i.complete, w: b.width, h: b.height };
      });
    }, [id]);
    const good = r ? r.filter((i) => i.ok && i.nw > 0 && i.nh > 0 && i.w > 0 && i.h > 0).length : 0;
    check(r && r.length >= min && good === r.length, `#${id}: ${r ? `${good} of ${r.length} images decoded and shown` : 'missing'}`);
  };

  if (!want('--no-curves')) {
    for (const id of ['loss-curve', 'accuracy-curve']) {
      const r = await svgFigure(id, 10);
      check(r && r.drawn >= 2, `#${id}: ${r ? r.drawn : 0} drawn series`);
    }
    const lr = await svgFigure('lr-curve', 10);
    check(lr && lr.drawn >= 1, `#lr-curve: ${lr ? lr.drawn : 0} drawn series`);
  }
  await svgFigure('confusion-matrix', 4);
  const rows = await page.evaluate(() => document.querySelectorAll('#per-class-table tr').length);
  check(rows >= 3, `#per-class-table: ${rows - 1} class rows`);
  await images('misclassified', 1);
  await images('saliency', 3);
  if (want('--modules')) {
    await svgFigure('module-map', 10);
    const mrows = await page.evaluate(() => document.querySelectorAll('#module-table tr').length);
    check(mrows >= 2, `#module-table: ${mrows - 1} module rows`);
    await svgFigure('compose-bars', 2);
  }
  if (want('--patch')) await svgFigure('patch-bars', 5);

  await page.screenshot({ path: shot, fullPage: true });
  const fs = require('fs');
  check(fs.existsSync(shot) && fs.statSync(shot).size > 1000, `screenshot ${shot}`);
  check(problems.length === 0, `no console errors or outside requests${problems.length ? ': ' + problems.join('; ') : ''}`);
  await browser.close();
  console.log(`report-browser-check: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(`report-browser-check: ${e.stack || e}`);
  process.exit(2);
});
