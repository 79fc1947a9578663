extension ServerConfig {
    /// What a template may set on this host.
    public func templatePolicy(homes: [String] = [], engineRemapsUsers: Bool) -> TemplatePolicy {
        TemplatePolicy(homeRoot: homeRoot, homes: homes, allowRootUnits: allowRootUnits, engineRemapsUsers: engineRemapsUsers)
    }
}
