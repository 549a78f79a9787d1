import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['sessions.test.ts'],
    // The pure parts of sessions.ts (classifier, parsing) carry their own tests.
    includeSource: ['sessions.ts'],
    // Tests drive a real tmux server and real child processes.
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
})
