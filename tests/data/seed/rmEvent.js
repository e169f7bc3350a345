// Простой вариант
ws.send(
    JSON.stringify({
        method: 'rmEvent',
        argument: {
            // *Логин1
            login: 'Agent',
            
            // *Логин2
            login2: 'Иванов И.И.',
            
            // *Пароль пользователя закодированный в SHA1 (формат фабулы)
            sha1: 'a9de7c...',
            
            name: 'NewChannel'
        }
    })
);
