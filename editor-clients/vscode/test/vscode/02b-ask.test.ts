/**
 * Ember: Ask about Selection against the real daemon (SmolLM2-135M): the question from the input
 * box, the answer streamed into "Answer about <file>" beside the editor, and the supporting passage
 * highlighted in the source. The model is small: the tests check the editor's side (streaming,
 * the highlight's range, the unsupported case), not how good the answer is.
 */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { AskOutcome } from '../../src/ask';
import { driver, ember, openFile, select } from './driver';

const TEXT =
  'Café 👋 notes. The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It is named after the engineer ' +
  'Gustave Eiffel, whose company designed and built the tower.\nThe tower is 330 metres tall.';

function answerDocument(outcome: AskOutcome): vscode.TextDocument {
  const doc = vscode.workspace.textDocuments.find((d) => d.uri.toString() === outcome.output.toString());
  assert.ok(doc, 'the answer document is open');
  return doc;
}

describe('Ask about Selection against the real daemon', () => {
  before(async () => {
    await ember();
  });

  it('Ask about Selection takes the question from an input box, streams the answer beside the editor and highlights its support in the selection', async () => {
    const head = 'Header line.\n';
    const editor = await openFile('tower.txt', `${head}${TEXT}\nFooter.`);
    select(editor, head.length, head.length + TEXT.length);
    const versions: string[] = [];
    const listener = vscode.workspace.onDidChangeTextDocument((e) => {
      if (e.document.uri.scheme === 'ember') versions.push(e.document.getText());
    });
    try {
      const asking = vscode.commands.executeCommand<AskOutcome | undefined>('ember.ask');
      await driver('quickInput', { text: 'Who is the tower named after?' });
      const outcome = await asking;
      assert.ok(outcome, 'an answer came back');
      const { result } = outcome;
      assert.equal(result.method, 'generative');
      assert.ok(result.answer.length > 0, 'an answer');
      const doc = answerDocument(outcome);
      assert.equal(doc.uri.path, '/Answer about tower.txt');
      assert.ok(doc.getText().startsWith(result.answer), doc.getText());
      const partial = versions.filter((v) => v.length > 0 && v.length < result.answer.length && result.answer.startsWith(v));
      assert.ok(partial.length >= 1, `streamed: ${partial.length} partial versions`);
      if (result.supported) {
        assert.ok(outcome.highlighted, 'a highlighted range');
        // Offsets are code points (the emoji before is two UTF-16 units): the range holds the quote exactly.
        assert.equal(editor.document.getText(outcome.highlighted), result.quote);
        assert.match(doc.getText(), /Supporting passage \(quoted from the text; highlighted in the editor\)/);
      } else {
        assert.equal(outcome.highlighted, undefined, 'nothing highlighted without support');
        assert.match(doc.getText(), /Not supported/);
      }
    } finally {
      listener.dispose();
    }
  });

  it('Ask about Selection without a selection asks about the whole file; a blank question asks nothing', async () => {
    const editor = await openFile('tower2.txt', TEXT);
    select(editor, 3); // no selection: the whole file
    const outcome = await vscode.commands.executeCommand<AskOutcome | undefined>('ember.ask', 'How tall is the tower?');
    assert.ok(outcome);
    assert.equal(outcome.result.windows, 1);
    if (outcome.highlighted) assert.equal(editor.document.getText(outcome.highlighted), outcome.result.quote);
    const failed = await vscode.commands.executeCommand<AskOutcome | undefined>('ember.ask', '   ');
    assert.equal(failed, undefined, 'a blank question asks nothing');
  });
});
