// Простой вариант
ws.send(
    JSON.stringify({
        method: 'onEvent',
        argument: {
            // *Логин1
            login: 'Agent',
            
            // *Логин2
            login2: 'Иванов И.И.',
            
            // *Пароль пользователя закодированный в SHA1 (формат фабулы)
            sha1: 'a9de7c...',
            
            name: 'NewChannel' // новый канал (поступил звонок)
        }
    })
);

// Или точней
ws.send(
    JSON.stringify({
        method: 'onEvent',
        argument: {
            // *Логин1
            login: 'Agent',
            
            // *Логин2
            login2: 'Иванов И.И.',
            
            // *Пароль пользователя закодированный в SHA1 (формат фабулы)
            sha1: 'a9de7c...',
            
            event: {
                // Событие "новый канал"
                name: 'Newchannel',
                
                // событие выстрелит только если event.CallerIDNum == "+71002003040"
                CallerIDNum: '+71002003040'
            }
        }
    })
);
