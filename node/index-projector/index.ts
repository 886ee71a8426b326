// node/index-projector/index.ts — the public face of the actor index: the projector that writes it and the view that queries it.
export { encodeEntry, entryOf, indexBucket, indexConsumer, indexKey, parseEntry, statePaths, type IndexEntry } from "./entry.js";
export { readIndexLag, type IndexLag } from "./lag.js";
export { openIndexBucket, startProjector, type Projector, type ProjectorOptions } from "./projector.js";
export { lazyIndexView, openIndexView, type IndexView, type IndexViewOptions, type IndexViewSource, type ListQuery, type ActorPage, type ProgramCounts } from "./view.js";
