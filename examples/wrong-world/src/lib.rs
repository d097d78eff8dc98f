//! Test guest: a valid component of another world (`weir:other/greeter`, exporting `greet`),
//! which the engine must reject at upload as not a processor.

wit_bindgen::generate!({
    inline: "
        package weir:other;

        world greeter {
            export greet: func(name: string) -> string;
        }
    ",
});

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        format!("hello, {name}")
    }
}

export!(Greeter);
