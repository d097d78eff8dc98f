// js_reverse(text) -> text: the text reversed, by Unicode code points; NULL gives NULL.
//
// A Weir scalar UDF written in JavaScript. componentize-js turns this module into a component
// of the `scalar-udf` world of wit/udf/udf.wit (weir:udf@0.1.0): `node build.mjs` here, or
// scripts/build-guests.sh (target/guests/udf-js-reverse.wasm).
//
// The world's exports are the module's exports. Values are `{ tag, val }` objects
// (`{ tag: 'text', val: 'abc' }`, `{ tag: 'null' }`), types are strings ('text'); `call`
// gets a batch of rows and returns one value per row. Throwing fails the batch with the
// message (the `err` of the result).

export function signature() {
  return { params: ['text'], returns: 'text' };
}

export function call(rows) {
  return rows.map((row) => {
    if (row.length !== 1) {
      throw `js_reverse takes 1 argument, got ${row.length}`;
    }
    const arg = row[0];
    switch (arg.tag) {
      case 'text':
        return { tag: 'text', val: Array.from(arg.val).reverse().join('') };
      case 'null':
        return { tag: 'null' };
      default:
        throw `js_reverse expects a STRING, got ${arg.tag}`;
    }
  });
}
