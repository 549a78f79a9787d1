import { availableParallelism } from 'node:os'
import { defineConfig } from 'vitest/config'

// .ci/run sets SESSIONS_TEST_RESULTS to keep vitest's JSON results, from which it prints the closing count.
const results = process.env.SESSIONS_TEST_RESULTS

// sessions.test.ts is run as PARTS processes, each declaring every PARTS-th test (see its top). Its tests
// mostly wait on real processes (engines, tmux, sshd), so more parts than cores are run at once; more parts
// than workers let a worker that finishes early take the next part. SESSIONS_TEST_PARTS=1 runs it in one.
const PARTS = Math.max(1, Math.trunc(Number(process.env.SESSIONS_TEST_PARTS)) || 8)

export default defineConfig({
  test: {
    // Tests drive a real tmux server and real child processes, several parts at once on a small machine:
    // a timeout catches a hang, never measures speed (npm run bench does).
    testTimeout: 60_000,
    hookTimeout: 30_000,
    maxWorkers: availableParallelism() + 1,
    // A part may hold no test of a block: that block is then empty there, not failed.
    passWithNoTests: true,
    projects: [
      // The pure parts of sessions.ts (classifier, parsing) carry their own tests.
      { extends: true as const, test: { name: 'in source', include: [], includeSource: ['sessions.ts'] } },
      ...Array.from({ length: PARTS }, (_, part) => ({
        extends: true as const,
        test: {
          name: `part ${part + 1}`,
          include: ['sessions.test.ts'],
          env: { SESSIONS_TEST_PART: String(part), SESSIONS_TEST_PARTS: String(PARTS) },
        },
      })),
    ],
    reporters: results ? ['default', ['json', { outputFile: results }]] : ['default'],
  },
})
