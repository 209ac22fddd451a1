// Builds the app into ../dist with fixed file names, so the Rust crate can embed each file by
// name (the service worker's cache version, not the file name, changes with the content).
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/app/',
  build: {
    outDir: '../dist',
    emptyOutDir: true,
    target: 'es2022',
    modulePreload: false,
    assetsInlineLimit: 0,
    reportCompressedSize: true,
    rollupOptions: {
      output: {
        // Fixed names for the entry and the stylesheet; chunks (the chat view and the MLS
        // library with its crypto, loaded only when a chat opens) are named after their module.
        // The Rust crate embeds whatever dist/ holds (its build script lists it).
        entryFileNames: 'app.js',
        chunkFileNames: 'app-[name].js',
        assetFileNames: 'app[extname]',
      },
    },
  },
});
