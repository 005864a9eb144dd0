//! hello-filter: the smallest useful Proxy-Wasm filter.
//!
//! - reads its plugin configuration (a greeting) in `on_configure`;
//! - answers `GET /hello` itself with a local response;
//! - adds `x-hello: <greeting>` to every other request on its way upstream,
//!   and `x-hello-route: <route name>` to the response.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(HelloRoot { greeting: "hello".to_string() })
    });
}}

struct HelloRoot {
    greeting: String,
}

impl Context for HelloRoot {}

impl RootContext for HelloRoot {
    /// The route's `config:` arrives here as JSON; we accept `{"greeting": "..."}`
    /// by a tiny hand parse to stay dependency-free. Returning false refuses the config.
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            return true;
        };
        let text = String::from_utf8_lossy(&bytes);
        match text
            .split("\"greeting\"")
            .nth(1)
            .and_then(|rest| rest.split('"').nth(1))
        {
            Some(g) if !g.is_empty() => {
                self.greeting = g.to_string();
                true
            }
            _ if text.trim() == "{}" || text.trim().is_empty() => true,
            _ => false,
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Hello {
            greeting: self.greeting.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Hello {
    greeting: String,
}

impl Context for Hello {}

impl HttpContext for Hello {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.get_http_request_header(":path").as_deref() == Some("/hello") {
            let body = format!("{}, world\n", self.greeting);
            self.send_http_response(
                200,
                vec![("content-type", "text/plain")],
                Some(body.as_bytes()),
            );
            return Action::Pause;
        }
        self.set_http_request_header("x-hello", Some(&self.greeting));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(route) = self.get_property(vec!["route_name"]) {
            let route = String::from_utf8_lossy(&route).into_owned();
            self.set_http_response_header("x-hello-route", Some(&route));
        }
        Action::Continue
    }
}
