//! An agent: a model, its tools, its context and its configuration; and its builder.

use std::sync::Arc;

use super::context::{Context, InMemoryContext};
use super::{AgentConfig, PatternSet, Tool};
use crate::llm::{LlmProvider, ToolSpec};

/// A model with tools. Give it a [`ResilientProvider`](crate::llm::ResilientProvider) and
/// the retries and rate-limit waits of its model calls appear in the step stream.
///
/// Made with [`Agent::builder`], or [`Agent::new`] for an agent with the default
/// context.
pub struct Agent {
    pub(crate) config: AgentConfig,
    pub(crate) provider: Arc<dyn LlmProvider>,
    pub(crate) tools: Vec<Arc<dyn Tool>>,
    pub(crate) context: Arc<dyn Context>,
    pub(crate) patterns: Option<PatternSet>,
}

impl Agent {
    /// An agent that answers with `provider` and may call `tools`, with a new
    /// [`InMemoryContext`].
    pub fn new(
        config: AgentConfig,
        provider: impl LlmProvider + 'static,
        tools: Vec<Arc<dyn Tool>>,
    ) -> Self {
        Agent::builder()
            .config(config)
            .tools(tools)
            .llm_provider(provider)
            .build()
    }

    /// Builds an agent part by part, as the reference framework's constructor reads:
    ///
    /// ```
    /// # #[cfg(feature = "openai")] {
    /// use aegeantic::agent::{Agent, AgentConfig, InMemoryContext};
    /// use aegeantic::llm::{OpenAiCompatible, OpenAiConfig};
    ///
    /// let provider = OpenAiCompatible::new(OpenAiConfig::new("http://127.0.0.1:8080/v1", "m"))
    ///     .unwrap();
    /// let agent = Agent::builder()
    ///     .config(AgentConfig { system_prompt: Some("Be brief.".into()), ..AgentConfig::default() })
    ///     .context(InMemoryContext::new())
    ///     .tools(Vec::new())
    ///     .llm_provider(provider)
    ///     .build();
    /// # let _ = agent; }
    /// ```
    ///
    /// Everything but the provider is optional: the configuration defaults to
    /// [`AgentConfig::default`], the context to a new [`InMemoryContext`], the patterns
    /// to none (native function calling only), the tools to none. `build` exists only once a provider is set.
    pub fn builder() -> AgentBuilder {
        AgentBuilder {
            config: AgentConfig::default(),
            context: None,
            patterns: None,
            tools: Vec::new(),
            provider: NoProvider,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// The context the agent reads its prompts from and writes its results to.
    pub fn context(&self) -> &Arc<dyn Context> {
        &self.context
    }

    /// The patterns tool calls and other segments are found by in the model's text.
    pub fn patterns(&self) -> Option<&PatternSet> {
        self.patterns.as_ref()
    }

    /// The system message: the configured prompt and, with patterns, the instructions
    /// for calling the tools in text.
    pub(crate) fn system_message(&self) -> Option<String> {
        let instructions = self
            .patterns
            .as_ref()
            .and_then(|set| set.tool_instructions(&self.tool_specs()));
        match (&self.config.system_prompt, instructions) {
            (Some(prompt), Some(instructions)) => Some(format!("{prompt}\n\n{instructions}")),
            (prompt, instructions) => prompt.clone().or(instructions),
        }
    }

    /// The tool specs sent natively: none with patterns, whose instructions describe the
    /// tools in the system message instead.
    pub(crate) fn native_tool_specs(&self) -> Vec<ToolSpec> {
        if self.patterns.is_some() {
            Vec::new()
        } else {
            self.tool_specs()
        }
    }

    pub(crate) fn tool(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.iter().find(|tool| tool.name() == name)
    }

    /// The tools the model is offered: those the allow-list lets through.
    pub(crate) fn tool_specs(&self) -> Vec<ToolSpec> {
        self.tools
            .iter()
            .filter(|tool| self.config.allows(tool.name()))
            .map(|tool| ToolSpec {
                name: tool.name().to_owned(),
                description: tool.description().to_owned(),
                parameters: tool.parameters(),
            })
            .collect()
    }
}

/// The state of an [`AgentBuilder`] before [`llm_provider`](AgentBuilder::llm_provider).
#[derive(Debug)]
pub struct NoProvider;

/// Builds an [`Agent`]; see [`Agent::builder`].
#[must_use]
pub struct AgentBuilder<P = NoProvider> {
    config: AgentConfig,
    context: Option<Arc<dyn Context>>,
    patterns: Option<PatternSet>,
    tools: Vec<Arc<dyn Tool>>,
    provider: P,
}

impl<P> AgentBuilder<P> {
    /// The configuration.
    pub fn config(mut self, config: AgentConfig) -> Self {
        self.config = config;
        self
    }

    /// The context. To share one between agents or runners, give each an `Arc` of it.
    pub fn context(mut self, context: impl Context + 'static) -> Self {
        self.context = Some(Arc::new(context));
        self
    }

    /// Finds tool calls and other segments in the model's text, for models and servers
    /// without native function calling; none by default (native function calling only).
    ///
    /// With a set, the tools are described to the model in the system message
    /// ([`PatternSet::tool_instructions`]) instead of being sent as native tool specs. A
    /// call found in the text runs through the same tool loop as a native one (allow-list,
    /// approval, the tool's policy, the same events and context writes); the results of
    /// an answer's text calls go back in one user message, each in the set's style
    /// ([`PatternSet::format_result`]), after the tool messages of any native calls. A
    /// malformed call (bad JSON, no name, no end tag) fails at once, the model told why.
    /// A call without a `call_id` of its own is named `text_call_{model call}_{segment}`
    /// (`text_call_1_0` for the first segment of the step's first model call), which its
    /// result's context key and [`ToolCallResult`](super::ToolCallResult) carry. The step's
    /// response is the set's response text, trimmed.
    ///
    /// ```
    /// # #[cfg(feature = "openai")] {
    /// use aegeantic::agent::{Agent, PatternSet};
    /// use aegeantic::llm::{OpenAiCompatible, OpenAiConfig};
    ///
    /// let provider = OpenAiCompatible::new(OpenAiConfig::new("http://127.0.0.1:8080/v1", "m"))
    ///     .unwrap();
    /// let agent = Agent::builder()
    ///     .patterns(PatternSet::xml_tags())
    ///     .llm_provider(provider)
    ///     .build();
    /// assert!(agent.patterns().is_some());
    /// # }
    /// ```
    pub fn patterns(mut self, patterns: PatternSet) -> Self {
        self.patterns = Some(patterns);
        self
    }

    /// Adds tools, such as those `#[tools]` makes of an impl block (`Arc::new(x).tools()`).
    pub fn tools(mut self, tools: impl IntoIterator<Item = Arc<dyn Tool>>) -> Self {
        self.tools.extend(tools);
        self
    }

    /// Adds one tool.
    pub fn tool(mut self, tool: impl Tool + 'static) -> Self {
        self.tools.push(Arc::new(tool));
        self
    }

    /// The model.
    pub fn llm_provider(
        self,
        provider: impl LlmProvider + 'static,
    ) -> AgentBuilder<Arc<dyn LlmProvider>> {
        AgentBuilder {
            config: self.config,
            context: self.context,
            patterns: self.patterns,
            tools: self.tools,
            provider: Arc::new(provider),
        }
    }
}

impl AgentBuilder<Arc<dyn LlmProvider>> {
    /// The agent.
    pub fn build(self) -> Agent {
        Agent {
            config: self.config,
            provider: self.provider,
            tools: self.tools,
            context: self
                .context
                .unwrap_or_else(|| Arc::new(InMemoryContext::new())),
            patterns: self.patterns,
        }
    }
}
