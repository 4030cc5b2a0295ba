import { describe, expect, it } from "vitest";
import { didYouMean, editDistance, suggestion } from "../src/util/suggest.js";

describe("did-you-mean", () => {
  it("counts insertions, deletions, substitutions and adjacent swaps as one edit each", () => {
    expect(editDistance("file", "file")).toBe(0);
    expect(editDistance("fiel", "file")).toBe(1);
    expect(editDistance("pnig", "ping")).toBe(1);
    expect(editDistance("mode", "modes")).toBe(1);
    expect(editDistance("kitten", "sitting")).toBe(3);
    expect(editDistance("", "abc")).toBe(3);
  });

  it("suggests the closest candidate only when it is close", () => {
    expect(didYouMean("fiel", ["file", "cmd", "test"])).toBe("file");
    expect(didYouMean("contnet", ["content", "contents", "mode"])).toBe("content");
    expect(didYouMean("zzzzzz", ["file", "cmd"])).toBeUndefined();
    expect(suggestion("mod", ["mode", "user"])).toBe(' (did you mean "mode"?)');
    expect(suggestion("qqq", ["mode"])).toBe("");
  });
});
