import { defineConfig } from 'vitest/config'

// .ci/run sets SESSIONS_TEST_RESULTS to keep vitest's JSON results, from which it prints the closing count.
const results = process.env.SESSIONS_TEST_RESULTS

export default defineConfig({
  test: {
    include: ['sessions.test.ts'],
    // The pure parts of sessions.ts (classifier, parsing) carry their own tests.
    includeSource: ['sessions.ts'],
    // Tests drive a real tmux server and real child processes.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: results ? ['default', ['json', { outputFile: results }]] : ['default'],
  },
})
